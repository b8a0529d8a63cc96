"""A deadline timer that follows the conversation: the shared base of the idle and silence clocks."""

from __future__ import annotations

from pipecat.frames.frames import Frame
from pipecat.processors.frame_processor import FrameDirection

from processors.conversation_state import DEFAULT_HANDOVER_SECS, ConversationState
from processors.deadline_timer import DeadlineTimerProcessor


class ConversationClockProcessor(DeadlineTimerProcessor):
    """Feeds every passing frame to a `ConversationState` and restarts it when the session starts.

    Subclasses read `self._state` in `seconds_until_due()` and act in `on_due()`.
    """

    def __init__(self, *, timeout_secs: float, handover_secs: float = DEFAULT_HANDOVER_SECS, **kwargs):
        super().__init__(**kwargs)
        self._timeout = timeout_secs
        self._state = ConversationState(handover_secs=handover_secs)

    def on_start(self) -> None:
        self._state.restart()

    def observe(self, frame: Frame, direction: FrameDirection) -> None:
        self._state.observe(frame)
