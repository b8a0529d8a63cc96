"""What was said, turn by turn, for anything that shows or records a conversation."""

from __future__ import annotations

import re
from typing import ClassVar

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    InterimTranscriptionFrame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TranscriptionFrame,
    TTSSpeakFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed

SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
# Text with no sentence end goes out anyway at this length: the work per token stays bounded
# however long an unpunctuated reply runs.
MAX_SENTENCE_CHARS = 2000


class ConversationTextObserver(BaseObserver):
    """Turns frames into `on_user(text)`, `on_bot(text)` and `on_state(state)` calls.

    `on_bot` gets each whole LLM reply, and each text spoken without the LLM (greeting, prompts,
    goodbye); `on_bot_sentence` gets the same text a sentence at a time, as the LLM generates it.
    The text is told apart by the frame that carries it, never by comparing words, and only the
    reply in progress is kept. States: listening, thinking, speaking. Subclasses decide what to
    do with them.
    """

    reads_input_audio: ClassVar[bool] = False  # LeanWorkerObserver spares it the caller's audio

    def __init__(self, **kwargs):
        super().__init__(**{"observe_every_push": False, **kwargs})  # first pushes are all it reads
        self._state = ""
        self._reply: list[str] = []  # the reply in progress, in pieces (joined once, at its end)
        self._unsaid = ""  # the reply's text after its last complete sentence

    def on_user(self, text: str) -> None:
        """The user said `text` (a final transcript)."""

    def on_user_partial(self, text: str) -> None:
        """An interim transcript of what the user is saying."""

    def on_bot(self, text: str) -> None:
        """The bot says `text`."""

    def on_bot_sentence(self, text: str) -> None:
        """The bot says `text`: a sentence of an LLM reply as soon as it is complete, or a whole
        text spoken without the LLM."""

    def on_state(self, state: str) -> None:
        """The conversation moved to `state`."""

    def _set_state(self, state: str) -> None:
        if state != self._state:
            self._state = state
            self.on_state(state)

    def _reply_text(self, text: str) -> None:
        self._reply.append(text)
        ends_a_sentence = SENTENCE_END.search(self._unsaid[-1:] + text) is not None  # new text only
        self._unsaid += text  # at most MAX_SENTENCE_CHARS long
        if not ends_a_sentence and len(self._unsaid) < MAX_SENTENCE_CHARS:
            return
        *sentences, self._unsaid = SENTENCE_END.split(self._unsaid)
        if len(self._unsaid) >= MAX_SENTENCE_CHARS:
            sentences.append(self._unsaid)
            self._unsaid = ""
        for sentence in sentences:
            if sentence.strip():
                self.on_bot_sentence(sentence.strip())

    def _reply_ended(self) -> None:
        if self._unsaid.strip():
            self.on_bot_sentence(self._unsaid.strip())
        reply = "".join(self._reply).strip()
        if reply:
            self.on_bot(reply)
        self._reply, self._unsaid = [], ""

    async def on_push_frame(self, data: FramePushed):
        frame = data.frame
        if isinstance(frame, TranscriptionFrame):
            self.on_user(frame.text)
        elif isinstance(frame, InterimTranscriptionFrame):
            self.on_user_partial(frame.text)
        elif isinstance(frame, UserStartedSpeakingFrame | BotStoppedSpeakingFrame):
            self._set_state("listening")
        elif isinstance(frame, UserStoppedSpeakingFrame):
            self._set_state("thinking")
        elif isinstance(frame, LLMFullResponseStartFrame):
            self._reply, self._unsaid = [], ""
            self._set_state("thinking")
        elif isinstance(frame, LLMTextFrame):
            self._reply_text(frame.text)
        elif isinstance(frame, LLMFullResponseEndFrame):
            self._reply_ended()
        elif isinstance(frame, InterruptionFrame):
            self._reply, self._unsaid = [], ""  # the rest of that reply will not be said
        elif isinstance(frame, TTSSpeakFrame) and frame.text.strip():
            self.on_bot(frame.text.strip())
            self.on_bot_sentence(frame.text.strip())
        elif isinstance(frame, BotStartedSpeakingFrame):
            self._set_state("speaking")
