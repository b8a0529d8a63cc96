"""Silero VAD and smart-turn with one ONNX session per process, instead of one per call.

Pipecat builds both models per session (`SileroVADAnalyzer` and `LocalSmartTurnAnalyzerV3` each
open an `onnxruntime.InferenceSession`): about 40 of the 54 MB each call costs, plus two
threads (baseline-capacity.md). `InferenceSession.run` is thread-safe and the models' per-call
state (Silero's recurrent state and context, smart-turn's audio buffer) lives outside the
session, so one session serves every call while each call keeps its own state.
"""

from __future__ import annotations

import functools
import os
import weakref
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import ClassVar

import numpy as np
import onnxruntime
from pipecat.audio.turn.smart_turn.base_smart_turn import BaseSmartTurn
from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3
from pipecat.audio.utils import exp_smoothing
from pipecat.audio.vad.silero import (
    _MODEL_RESET_INTERVAL_SECS,
    _MODEL_RESET_LOW_CONFIDENCE_WINDOWS,
    _MODEL_RESET_MAX_CONFIDENCE,
)
from pipecat.audio.vad.vad_analyzer import VADAnalyzer, VADParams, VADState
from pipecat.utils.env import env_truthy

from processors.silero_batcher import WINDOW_SAMPLES, SileroBatcher, SileroStream, states_after_silence
from processors.vad_volume import RollingVolumeTracker


def _session_options(*, threads: int = 1, graph_optimization: bool = False) -> onnxruntime.SessionOptions:
    options = onnxruntime.SessionOptions()
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = threads
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    if graph_optimization:
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


# Up to this many calls in the process, turn decisions use two threads (see SharedSmartTurnAnalyzer).
FAST_TURN_MAX_CALLS = 4


def bundled_vad_model_path() -> str:
    """Pipecat's bundled Silero VAD model (never the torch-based PyPI package)."""
    (path,) = [f for f in resources.files("pipecat.audio.vad.data").iterdir() if f.name.endswith(".onnx")]
    return str(path)


@functools.cache
def vad_model_session() -> onnxruntime.InferenceSession:
    """The process's Silero VAD session, from the one ONNX model Pipecat's VAD package bundles."""
    return onnxruntime.InferenceSession(
        bundled_vad_model_path(), providers=["CPUExecutionProvider"], sess_options=_session_options()
    )


@functools.cache
def smart_turn_session(threads: int = 1) -> onnxruntime.InferenceSession:
    """The process's smart-turn v3.2 session (one per thread count), from the model bundled in Pipecat.

    Idle intra-op threads do not spin-wait: they must not take CPU from the event loop.
    """
    path = resources.files("pipecat.audio.turn.smart_turn.data").joinpath("smart-turn-v3.2-cpu.onnx")
    options = _session_options(threads=threads, graph_optimization=True)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(path), sess_options=options)


def smart_turn_threads() -> int:
    """Threads for a fast turn decision while the process is lightly loaded (2 where there are 2 cores)."""
    return min(2, os.cpu_count() or 1)


@functools.cache
def smart_turn_executor() -> ThreadPoolExecutor:
    """One thread runs every call's end-of-turn inference (~30 ms, once per turn)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="smart-turn")


class SharedSileroVADAnalyzer(VADAnalyzer):
    """Pipecat's Silero VAD on the process's Silero session, each call's windows scored in batches.

    Scores as `SileroVADAnalyzer` does: the same model, windows and model resets, and Pipecat's
    own state machine (`VADAnalyzer`) on top (silence aside, below). Instead of one ONNX session per call,
    every call's windows are scored by the process's `SileroBatcher`, together with the other
    calls' windows of the same event-loop turn; each call keeps its recurrent state in a
    `SileroStream` of its own.

    The state machine runs on the event loop through `VADAnalyzer._run_analyzer`, the one private
    member this relies on: the public `analyze_audio` runs it in a per-call thread, and that hop
    for every 20 ms frame made the analysis cost 30 % more CPU (285 instead of 218 µs per frame
    at 25 calls) and kept the calls' windows from meeting in one batch.

    The volume gate is Pipecat's too, measured by a `RollingVolumeTracker` in place of the
    state machine's `AudioVolumeTracker` (its private `_volume_tracker`): the same value, at
    half the CPU of re-filtering 400 ms of audio for every window.

    Digital silence is not sent to the model. While the state machine is quiet, a window whose
    volume is under the gate (`VADParams.min_volume`) cannot count as speech whatever Silero
    scores it; if the window is also all zeros (a muted microphone, a phone line's digital
    silence), it is not scored. The model is then taken up where scoring the zeros would have
    left it (`SileroStream.resume_after_silence`): exactly, when the model was fresh as the
    silence began or was reset during it (Silero's periodic reset falls in any pause over 2 s),
    and as a fresh model after that much silence otherwise. The state machine reads the
    volumes it would have measured (`_get_smoothed_volume` returns them). Confidences after a
    long pause are Pipecat's exactly, and speech starts and stops where Pipecat's VAD finds it
    give or take two frames after a short one, less than Pipecat's own spread on the same audio
    heard a second later (tests/test_shared_models.py).
    `skip_silence=False` scores every window, with Pipecat's confidences to 1e-5.

    Example::

        vad = SharedSileroVADAnalyzer(params=VADParams(stop_secs=0.2))
    """

    def __init__(
        self, *, sample_rate: int | None = None, params: VADParams | None = None, skip_silence: bool = True
    ):
        super().__init__(sample_rate=sample_rate, params=params)
        self._stream: SileroStream | None = None
        self._partial = b""  # the start of the next window (the state machine holds it too)
        self._scores: deque[float] = deque()  # scored windows the state machine has yet to read
        self._state = VADState.QUIET  # the state machine's state, as it last reported it
        self._windows_since_reset = 0
        self._low_confidence_windows = 0
        self._volumes: deque[float] = deque()  # the state machine's volume for those windows
        self._skip_silence = skip_silence
        self._unscored_windows = 0  # silent windows since the last one scored, or the model's reset

    def set_sample_rate(self, sample_rate: int) -> None:
        super().set_sample_rate(sample_rate)
        self._stream = SileroStream(self.sample_rate)  # raises on a rate Silero does not take
        self._unscored_windows = 0
        tracker = self._volume_tracker
        if not isinstance(tracker, RollingVolumeTracker) or tracker.sample_rate != self.sample_rate:
            # Pipecat's tracker keeps its window unless the rate changes; so does this.
            self._volume_tracker = RollingVolumeTracker(
                sample_rate=self.sample_rate, chunk_samples=self.num_frames_required()
            )

    def set_params(self, params: VADParams) -> None:
        super().set_params(params)  # restarts the state machine
        self._state = VADState.QUIET

    def num_frames_required(self) -> int:
        return WINDOW_SAMPLES.get(self.sample_rate, WINDOW_SAMPLES[16000])

    async def analyze_audio(self, buffer: bytes) -> VADState:
        """Score each window this audio completes, then let Pipecat's state machine read the scores.

        The audio reaches the state machine in pieces that complete at most one window each, so
        the state it reports after a piece is the one it is in when the next window is scored,
        which the model resets depend on. A 20 ms frame is always a single piece.
        """
        window_bytes = self.num_frames_required() * 2
        while buffer:
            cut = 2 * window_bytes - 1 - len(self._partial)
            piece, buffer = buffer[:cut], buffer[cut:]
            pending = self._partial + piece
            if len(pending) >= window_bytes:
                await self._score_window(pending[:window_bytes])
                pending = pending[window_bytes:]
            self._partial = pending
            self._state = self._run_analyzer(piece)  # private: see the class docstring
        return self._state

    async def _score_window(self, audio: bytes) -> None:
        """Score one window, unless it is digital silence while the caller is quiet."""
        volume = self._next_smoothed_volume(audio)
        if (
            self._skip_silence
            and self._state == VADState.QUIET
            and volume < self._params.min_volume  # the state machine will not count it as speech
            and audio.count(0) == len(audio)  # digital silence
        ):
            self._volumes.append(volume)
            self._scores.append(0.0)
            self._unscored_windows += 1
            return
        if self._unscored_windows:
            self._stream.resume_after_silence(vad_model_session(), self._unscored_windows)
            self._unscored_windows = 0
        window = np.frombuffer(audio, np.int16).astype(np.float32) / 32768.0
        batcher = SileroBatcher.for_running_loop(vad_model_session())
        confidence = await batcher.score(self._stream, window)
        # Both together, after the wait: a cancelled wait leaves the state machine no half window.
        self._volumes.append(volume)
        self._scores.append(confidence)

    def _next_smoothed_volume(self, audio: bytes) -> float:
        """The volume the state machine will read for this window, as its `_get_smoothed_volume`
        computes it (the windows are measured in order, each after the one before has been read)."""
        self._volume_tracker.update(audio, self.sample_rate)
        return exp_smoothing(self._volume_tracker.volume, self._prev_volume, self._smoothing_factor)

    def _get_smoothed_volume(self, audio: bytes) -> float:
        return self._volumes.popleft()

    def voice_confidence(self, buffer: bytes) -> float:
        """The score `analyze_audio` got for this window from the batch."""
        confidence = self._scores.popleft()
        self._maybe_reset_stream(confidence)
        return confidence

    def _maybe_reset_stream(self, confidence: float) -> None:
        """Silero's periodic model reset, as `SileroVADAnalyzer` does it (see its `_maybe_reset_model`).

        The recurrent state drifts during long non-speech and then under-reports speech; it is
        reset every `_MODEL_RESET_INTERVAL_SECS` of audio, once the VAD is quiet and a run of
        windows scored clearly below speech.
        """
        self._windows_since_reset += 1
        if confidence < _MODEL_RESET_MAX_CONFIDENCE:
            self._low_confidence_windows += 1
        else:
            self._low_confidence_windows = 0
        if (
            self._windows_since_reset * self.num_frames_required()
            >= _MODEL_RESET_INTERVAL_SECS * self.sample_rate
            and self._state == VADState.QUIET
            and self._low_confidence_windows >= _MODEL_RESET_LOW_CONFIDENCE_WINDOWS
        ):
            self._stream.reset()
            self._windows_since_reset = 0
            self._unscored_windows = 0  # the silence it is taken up after counts from here


class SharedSmartTurnAnalyzer(LocalSmartTurnAnalyzerV3):
    """`LocalSmartTurnAnalyzerV3` on the process's smart-turn session and inference thread.

    The inference sits on every turn's critical path (VAD stop -> turn decision). With few
    calls in the process it runs on two threads (18 ms instead of 31 ms per turn here); under
    load one thread does the same work with less overhead and leaves the event loop its core.

    Example::

        TurnAnalyzerUserTurnStopStrategy(turn_analyzer=SharedSmartTurnAnalyzer())
    """

    _live: ClassVar[weakref.WeakSet[SharedSmartTurnAnalyzer]] = weakref.WeakSet()

    def __init__(self, **kwargs):
        BaseSmartTurn.__init__(self, **kwargs)  # skip the model load
        self._log_data = env_truthy("PIPECAT_SMART_TURN_LOG_DATA", default=False)
        SharedSmartTurnAnalyzer._live.add(self)

    @property
    def _session(self) -> onnxruntime.InferenceSession:
        few_calls = len(SharedSmartTurnAnalyzer._live) <= FAST_TURN_MAX_CALLS
        return smart_turn_session(smart_turn_threads() if few_calls else 1)

    @property
    def _model_executor(self) -> ThreadPoolExecutor:
        return smart_turn_executor()


def preload() -> None:
    """Open the sessions at start-up, not on the first call."""
    for sample_rate in WINDOW_SAMPLES:  # the model after silence, for calls that were silent
        states_after_silence(vad_model_session(), sample_rate)
    smart_turn_session(1)
    smart_turn_session(smart_turn_threads())
