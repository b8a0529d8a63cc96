"""Scores the Silero VAD windows of every call in the process with one inference per event-loop turn."""

from __future__ import annotations

import asyncio
import weakref
from collections import defaultdict
from typing import ClassVar

import numpy as np
import onnxruntime
from loguru import logger

# Silero's recurrent state, and the audio each window is prefixed with (the previous window's tail).
STATE_SHAPE = (2, 1, 128)
CONTEXT_SAMPLES = {16000: 64, 8000: 32}
WINDOW_SAMPLES = {16000: 512, 8000: 256}


class SileroStream:
    """One call's Silero state: the model's recurrent state and the context window it carries.

    Silero is recurrent: each window is scored with the state the previous window left, and
    prefixed with the last samples of the previous window. Keeping both per call is what lets
    one ONNX session serve every call.
    """

    def __init__(self, sample_rate: int):
        if sample_rate not in WINDOW_SAMPLES:
            raise ValueError(f"Silero VAD sample rate needs to be 16000 or 8000 (sample rate: {sample_rate})")
        self.sample_rate = sample_rate
        self.window_samples = WINDOW_SAMPLES[sample_rate]
        self.state = np.zeros(STATE_SHAPE, dtype=np.float32)
        self.context = np.zeros(CONTEXT_SAMPLES[sample_rate], dtype=np.float32)

    def reset(self) -> None:
        """Forget what the model has heard, as at the start of a call."""
        self.state = np.zeros(STATE_SHAPE, dtype=np.float32)
        self.context = np.zeros(CONTEXT_SAMPLES[self.sample_rate], dtype=np.float32)


_Queued = tuple[SileroStream, np.ndarray, asyncio.Future]


class SileroBatcher:
    """Collects windows from many calls and runs them through Silero as one batch.

    Silero takes a batch dimension (input `[N, context + window]`, state `[2, N, 128]`), and one
    run over N windows costs far less than N runs (0.09 ms for one window, 0.04 ms per window
    in a batch of 16, on this project's machine). A window is queued and scored at the end of the
    current event-loop turn together with every window queued in the same turn, so the batch
    grows with the load and a lone call waits for nothing but the turn it is already in. Each
    call keeps its own state in its `SileroStream`, exactly as if it had run alone.

    Example::

        confidence = await SileroBatcher.for_running_loop(session).score(stream, window)
    """

    _per_loop: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SileroBatcher]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, session: onnxruntime.InferenceSession, loop: asyncio.AbstractEventLoop):
        self._session = session
        self._loop = loop
        self._queued: list[_Queued] = []
        self.runs = 0  # inferences made, for tests and benchmarks
        self.windows = 0

    @classmethod
    def for_running_loop(cls, session: onnxruntime.InferenceSession) -> SileroBatcher:
        loop = asyncio.get_running_loop()
        batcher = cls._per_loop.get(loop)
        if batcher is None:
            batcher = cls._per_loop[loop] = cls(session, loop)
        return batcher

    @classmethod
    def of_running_loop(cls) -> SileroBatcher | None:
        """The running loop's batcher, if any call has used it (for statistics)."""
        return cls._per_loop.get(asyncio.get_running_loop())

    def score(self, stream: SileroStream, window: np.ndarray) -> asyncio.Future[float]:
        """Speech confidence (0–1) of one float32 window of `stream`, scored with the next batch."""
        future = self._loop.create_future()
        if not self._queued:
            self._loop.call_soon(self._run_queued)
        self._queued.append((stream, window, future))
        return future

    def _run_queued(self) -> None:
        queued, self._queued = self._queued, []
        by_rate: defaultdict[int, list[_Queued]] = defaultdict(list)
        for item in queued:
            by_rate[item[0].sample_rate].append(item)
        for sample_rate, items in by_rate.items():
            try:
                self._run_batch(sample_rate, items)
            except Exception as error:  # a broken batch must not leave its calls waiting
                logger.error(f"Silero VAD inference failed: {error}")
                for *_, future in items:
                    if not future.done():
                        future.set_result(0.0)

    def _run_batch(self, sample_rate: int, items: list[_Queued]) -> None:
        batch = np.stack([np.concatenate((stream.context, window)) for stream, window, _ in items])
        state = np.concatenate([stream.state for stream, *_ in items], axis=1)
        confidences, new_state = self._session.run(
            None, {"input": batch, "state": state, "sr": np.array(sample_rate, dtype=np.int64)}
        )
        self.runs += 1
        self.windows += len(items)
        context_samples = CONTEXT_SAMPLES[sample_rate]
        for row, (stream, _, future) in enumerate(items):
            stream.state = new_state[:, row : row + 1, :]
            stream.context = batch[row, -context_samples:]
            if not future.done():
                future.set_result(float(confidences[row, 0]))
