"""A deadline timer that follows the conversation: the shared base of the idle and silence clocks."""

from __future__ import annotations

from processors.conversation_state import ConversationState
from processors.deadline_timer import DeadlineTimerProcessor


class ConversationClockProcessor(DeadlineTimerProcessor):
    """Reads the session's `ConversationState` (fed by `ConversationTracker`) and re-checks its
    deadline whenever the state changes.

    Subclasses read `self._state` in `seconds_until_due()` and act in `on_due()`.
    """

    def __init__(self, *, state: ConversationState, timeout_secs: float, **kwargs):
        super().__init__(clock=state.clock, **kwargs)
        self._timeout = timeout_secs
        self._state = state
        state.on_change(self.reschedule)
