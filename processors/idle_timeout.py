"""Ends a session whose client has gone quiet: no audio, no message, while the bot is not busy."""

from __future__ import annotations

from loguru import logger

from processors.conversation_clock import ConversationClockProcessor
from processors.conversation_state import ConversationState
from processors.frames import IdleTimeoutFrame


class IdleTimeoutProcessor(ConversationClockProcessor):
    """Pushes `IdleTimeoutFrame` when the client has sent nothing for `timeout_secs`.

    The clock counts from the later of the client's last input (audio frame, message, DTMF) and
    the moment the bot stopped being busy. It never runs while the bot works on a reply: from
    the end of the user's speech through STT, the LLM (however long it takes) and TTS playback.
    So a client that sends one recording and waits is never hung up on while it is answered.

    Place it after the `ConversationTracker` that feeds `state`.

    Example::

        IdleTimeoutProcessor(state=state, timeout_secs=30, goodbye="Goodbye!")
    """

    def __init__(self, *, state: ConversationState, timeout_secs: float, goodbye: str = "", **kwargs):
        super().__init__(state=state, timeout_secs=timeout_secs, **kwargs)
        self._goodbye = goodbye

    def seconds_until_due(self) -> float:
        if self._timeout <= 0:
            return float("inf")
        if self._state.bot_busy:
            return self._timeout
        since = max(self._state.last_client_input, self._state.waiting_since)
        return since + self._timeout - self._state.now()

    async def on_due(self) -> bool:
        logger.info(f"{self}: no input from the client for {self._timeout:g}s, ending the session")
        await self.push_frame(
            IdleTimeoutFrame(
                goodbye=self._goodbye, detail=f"nothing came from your side for {self._timeout:g} seconds"
            )
        )
        return False
