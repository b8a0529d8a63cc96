"""Feeds a session's one `ConversationState` from the frames passing one point of the pipeline."""

from __future__ import annotations

from pipecat.frames.frames import Frame, StartFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from processors.conversation_state import ConversationState


class ConversationTracker(FrameProcessor):
    """Passes every frame on, and shows each one (both directions) to the session's state.

    Place it right after the LLM and before the clocks that read the state: there it sees
    client input (messages, audio ticks), LLM responses, our own prompts, and bot speech
    (pushed upstream by the output transport).

    Example::

        state = ConversationState()
        Pipeline([..., llm, ConversationTracker(state), IdleTimeoutProcessor(state=state, ...), ...])
    """

    def __init__(self, state: ConversationState, **kwargs):
        super().__init__(**{"enable_direct_mode": True, **kwargs})  # no queue hop per frame
        self._state = state

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame):
            self._state.restart()
        else:
            self._state.observe(frame)
        await self.push_frame(frame, direction)
