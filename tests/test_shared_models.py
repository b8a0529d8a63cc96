"""Per-process Silero and smart-turn: same answers as Pipecat's per-call models, state kept apart."""

from __future__ import annotations

import asyncio
import gc

import numpy as np
from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams, VADState

from processors.shared_models import (
    FAST_TURN_MAX_CALLS,
    SharedSileroVADAnalyzer,
    SharedSmartTurnAnalyzer,
    silero_session,
    smart_turn_threads,
)
from processors.silero_batcher import SileroBatcher
from tests.support.speech import silence_pcm16, speech_pcm16

FRAME_BYTES = 640  # 20 ms at 16 kHz, as transports deliver it


def pipecat_states(pcm16: bytes) -> tuple[list[VADState], np.ndarray]:
    """Pipecat's own per-call Silero analyzer, frame by frame: the reference."""
    analyzer = SileroVADAnalyzer(params=VADParams(stop_secs=0.2))
    analyzer.set_sample_rate(16000)
    states = [analyzer._run_analyzer(pcm16[i : i + FRAME_BYTES]) for i in range(0, len(pcm16), FRAME_BYTES)]
    return states, analyzer._model._state


async def shared_states(analyzer: SharedSileroVADAnalyzer, pcm16: bytes) -> list[VADState]:
    return [
        await analyzer.analyze_audio(pcm16[i : i + FRAME_BYTES]) for i in range(0, len(pcm16), FRAME_BYTES)
    ]


def new_shared() -> SharedSileroVADAnalyzer:
    analyzer = SharedSileroVADAnalyzer(params=VADParams(stop_secs=0.2))
    analyzer.set_sample_rate(16000)
    return analyzer


QUESTION = silence_pcm16(0.5) + speech_pcm16("What is the capital of France?") + silence_pcm16(1.0)


async def test_shared_vad_decides_exactly_like_pipecats():
    theirs, their_model_state = pipecat_states(QUESTION)
    analyzer = new_shared()
    ours = await shared_states(analyzer, QUESTION)
    assert ours == theirs
    assert VADState.SPEAKING in ours and ours[-1] == VADState.QUIET
    assert np.allclose(analyzer._model._state, their_model_state, atol=1e-5)


async def test_concurrent_calls_share_one_inference_but_keep_their_own_state():
    audios = [
        QUESTION,
        silence_pcm16(0.3) + speech_pcm16("Hello there, how are you today?") + silence_pcm16(1.2),
        silence_pcm16(len(QUESTION) / 32000),
    ]
    audios = [a[: min(map(len, audios))] for a in audios]
    analyzers = [new_shared() for _ in audios]
    assert analyzers[0]._model.session is analyzers[1]._model.session
    batcher = SileroBatcher.for_running_loop(silero_session())
    runs, windows = batcher.runs, batcher.windows

    states = await asyncio.gather(
        *(shared_states(a, audio) for a, audio in zip(analyzers, audios, strict=True))
    )

    for ours, audio in zip(states, audios, strict=True):
        assert ours == pipecat_states(audio)[0]
    assert VADState.SPEAKING in states[0] and VADState.SPEAKING not in states[2]
    scored = batcher.windows - windows
    assert scored >= 3 * (len(audios[0]) // 1024 - 1)
    assert batcher.runs - runs <= scored / 2.5  # three calls' windows went through together


def test_smart_turn_shares_its_session_and_thread_and_uses_more_threads_only_when_calls_are_few():
    first, second = SharedSmartTurnAnalyzer(), SharedSmartTurnAnalyzer()
    assert first._session is second._session
    assert first._model_executor is second._model_executor
    assert isinstance(first, LocalSmartTurnAnalyzerV3)
    assert first._session.get_session_options().intra_op_num_threads == smart_turn_threads()

    crowd = [SharedSmartTurnAnalyzer() for _ in range(FAST_TURN_MAX_CALLS)]
    assert first._session.get_session_options().intra_op_num_threads == 1
    assert first._session is crowd[0]._session
    del crowd
    gc.collect()
    assert first._session.get_session_options().intra_op_num_threads == smart_turn_threads()
