"""A live console view of a local session: what the bot heard, what it says, and its state."""

from __future__ import annotations

import sys
from typing import TextIO

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


class ConsoleView(BaseObserver):
    """Prints `[state]` changes, `You: …` for each transcript and `Bot: …` for each reply.

    Example::

        VoiceSession.build(transport, ..., observers=[ConsoleView()])
    """

    def __init__(self, out: TextIO | None = None, **kwargs):
        super().__init__(**kwargs)
        self._out = out or sys.stdout
        self._state = ""
        self._reply = ""

    def _print(self, line: str) -> None:
        print(line, file=self._out, flush=True)

    def _set_state(self, state: str) -> None:
        if state != self._state:
            self._state = state
            self._print(f"[{state}]")

    async def on_push_frame(self, data: FramePushed):
        if not data.first_push:
            return
        frame = data.frame
        if isinstance(frame, TranscriptionFrame):
            self._print(f"You: {frame.text}")
        elif isinstance(frame, UserStartedSpeakingFrame):
            self._set_state("listening")
        elif isinstance(frame, UserStoppedSpeakingFrame | LLMFullResponseStartFrame):
            self._reply = "" if isinstance(frame, LLMFullResponseStartFrame) else self._reply
            self._set_state("thinking")
        elif isinstance(frame, LLMTextFrame):
            self._reply += frame.text
        elif isinstance(frame, LLMFullResponseEndFrame) and self._reply.strip():
            self._print(f"Bot: {self._reply.strip()}")
            self._reply = ""
        elif isinstance(frame, TTSSpeakFrame):
            self._print(f"Bot: {frame.text}")
        elif isinstance(frame, BotStartedSpeakingFrame):
            self._set_state("speaking")
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._set_state("listening")
