"""A user mute strategy: once the session is ending, what the user says is not answered."""

from __future__ import annotations

from pipecat.frames.frames import Frame
from pipecat.turns.user_mute.base_user_mute_strategy import BaseUserMuteStrategy

from processors.frames import SessionEndingFrame


class MutedWhileEndingStrategy(BaseUserMuteStrategy):
    """Mutes the user from the `SessionEndingFrame` on: a caller talking over the goodbye starts
    no turn, so no reply is generated and spoken after the goodbye the session ends with.

    Example::

        LLMUserAggregatorParams(user_mute_strategies=[MutedWhileEndingStrategy()])
    """

    def __init__(self):
        super().__init__()
        self._ending = False

    async def process_frame(self, frame: Frame) -> bool:
        await super().process_frame(frame)
        self._ending = self._ending or isinstance(frame, SessionEndingFrame)
        return self._ending
