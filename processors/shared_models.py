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
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import ClassVar

import numpy as np
import onnxruntime
from pipecat.audio.turn.smart_turn.base_smart_turn import BaseSmartTurn
from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3
from pipecat.audio.vad.silero import SileroOnnxModel, SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADAnalyzer, VADParams, VADState
from pipecat.utils.env import env_truthy

from processors.silero_batcher import SileroBatcher


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
def silero_session() -> onnxruntime.InferenceSession:
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


class _SharedSileroModel(SileroOnnxModel):
    """Pipecat's Silero wrapper on the shared session: this call's state, not its own session."""

    def __init__(self) -> None:  # no super(): it would open a session
        self.session = silero_session()
        self.sample_rates = [8000, 16000]
        self.reset_states()


class SharedSileroVADAnalyzer(SileroVADAnalyzer):
    """`SileroVADAnalyzer` on the process's Silero session, analysing on the event loop.

    A window takes about 0.1 ms; Pipecat hands every 20 ms frame to a per-call thread, and that
    hop (and the GIL ping-pong it causes) costs more than the inference itself. Windows are
    scored by the process's `SileroBatcher`, together with the other calls' windows of the same
    event-loop turn; Pipecat's own state machine (`_run_analyzer`) then reads the score.

    Example::

        vad = SharedSileroVADAnalyzer(params=VADParams(stop_secs=0.2))
    """

    def __init__(self, *, sample_rate: int | None = None, params: VADParams | None = None):
        VADAnalyzer.__init__(self, sample_rate=sample_rate, params=params)  # skip the model load
        self._model = _SharedSileroModel()
        self._windows_since_reset = 0
        self._low_confidence_windows = 0
        self._score = 0.0

    async def analyze_audio(self, buffer: bytes) -> VADState:
        # Feed Pipecat's analyzer one window at a time, each scored (batched) just before.
        state = self._vad_state
        while buffer:
            missing = self._vad_frames_num_bytes - len(self._vad_buffer)
            piece, buffer = buffer[:missing], buffer[missing:]
            if len(piece) == missing:
                window = np.frombuffer(bytes(self._vad_buffer) + piece, np.int16).astype(np.float32) / 32768.0
                batcher = SileroBatcher.for_running_loop(silero_session())
                self._score = await batcher.score(self._model, window, self.sample_rate)
            state = self._run_analyzer(piece)
        return state

    def voice_confidence(self, buffer) -> float:
        """The score `analyze_audio` got for this window from the batch."""
        confidence, self._score = self._score, 0.0
        self._maybe_reset_model(confidence)
        return confidence


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
    silero_session()
    smart_turn_session(1)
    smart_turn_session(smart_turn_threads())
