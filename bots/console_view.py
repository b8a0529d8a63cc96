"""A live console view of a local session: what the bot heard, what it says, and its state."""

from __future__ import annotations

import sys
from typing import TextIO

from processors.conversation_text import ConversationTextObserver


class ConsoleView(ConversationTextObserver):
    """Prints `[state]` changes, `You: …` for each transcript and `Bot: …` for each reply.

    Example::

        VoiceSession.build(transport, ..., observers=[ConsoleView()])
    """

    def __init__(self, out: TextIO | None = None, **kwargs):
        super().__init__(**kwargs)
        self._out = out or sys.stdout

    def _print(self, line: str) -> None:
        print(line, file=self._out, flush=True)

    def on_user(self, text: str) -> None:
        self._print(f"You: {text}")

    def on_bot(self, text: str) -> None:
        self._print(f"Bot: {text}")

    def on_state(self, state: str) -> None:
        self._print(f"[{state}]")
