"""What was said, turn by turn, for anything that shows or records a conversation."""

from __future__ import annotations

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TranscriptionFrame,
    TTSSpeakFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed


class ConversationTextObserver(BaseObserver):
    """Turns frames into `on_user(text)`, `on_bot(text)` and `on_state(state)` calls.

    `on_bot` gets each whole LLM reply, and each text spoken without the LLM (greeting, prompts,
    goodbye). States: listening, thinking, speaking. Subclasses decide what to do with them.
    """

    def __init__(self, **kwargs):
        super().__init__(**{"observe_every_push": False, **kwargs})  # first pushes are all it reads
        self._state = ""
        self._reply = ""

    def on_user(self, text: str) -> None:
        """The user said `text` (a final transcript)."""

    def on_bot(self, text: str) -> None:
        """The bot says `text`."""

    def on_state(self, state: str) -> None:
        """The conversation moved to `state`."""

    def _set_state(self, state: str) -> None:
        if state != self._state:
            self._state = state
            self.on_state(state)

    async def on_push_frame(self, data: FramePushed):
        frame = data.frame
        if isinstance(frame, TranscriptionFrame):
            self.on_user(frame.text)
        elif isinstance(frame, UserStartedSpeakingFrame | BotStoppedSpeakingFrame):
            self._set_state("listening")
        elif isinstance(frame, UserStoppedSpeakingFrame):
            self._set_state("thinking")
        elif isinstance(frame, LLMFullResponseStartFrame):
            self._reply = ""
            self._set_state("thinking")
        elif isinstance(frame, LLMTextFrame):
            self._reply += frame.text
        elif isinstance(frame, LLMFullResponseEndFrame) and self._reply.strip():
            self.on_bot(self._reply.strip())
            self._reply = ""
        elif isinstance(frame, TTSSpeakFrame):
            self.on_bot(frame.text)
        elif isinstance(frame, BotStartedSpeakingFrame):
            self._set_state("speaking")
