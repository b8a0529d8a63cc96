"""The opt-in per-session transcript log (off by default: conversations are private)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from processors.conversation_text import ConversationTextObserver


class TranscriptLog(ConversationTextObserver):
    """Appends one JSON line per utterance to `<directory>/<session id>.jsonl`.

    Example::

        TranscriptLog(Path("/var/log/voicebot"), session_id="ab12cd34ef56")
    """

    def __init__(self, directory: Path, *, session_id: str, **kwargs):
        super().__init__(**kwargs)
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{session_id}.jsonl"

    def _write(self, role: str, text: str) -> None:
        with self.path.open("a", encoding="utf-8") as log:
            log.write(json.dumps({"at": round(time.time(), 3), "role": role, "text": text}) + "\n")

    def on_user(self, text: str) -> None:
        self._write("user", text)

    def on_bot(self, text: str) -> None:
        self._write("bot", text)
