"""Per-process Silero and smart-turn: same answers as Pipecat's per-call models, state kept apart."""

from __future__ import annotations

import numpy as np
from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3
from pipecat.audio.vad.silero import SileroVADAnalyzer

from processors.shared_models import SharedSileroVADAnalyzer, SharedSmartTurnAnalyzer
from tests.support.speech import silence_pcm16, speech_pcm16

WINDOW_BYTES = 512 * 2


def confidences(analyzer, pcm16: bytes) -> list[float]:
    analyzer.set_sample_rate(16000)
    return [
        float(np.asarray(analyzer.voice_confidence(pcm16[i : i + WINDOW_BYTES])).reshape(-1)[0])
        for i in range(0, len(pcm16) - WINDOW_BYTES + 1, WINDOW_BYTES)
    ]


def test_shared_vad_scores_speech_exactly_like_pipecats():
    audio = silence_pcm16(0.5) + speech_pcm16("What is the capital of France?") + silence_pcm16(0.5)
    ours, theirs = confidences(SharedSileroVADAnalyzer(), audio), confidences(SileroVADAnalyzer(), audio)
    assert np.allclose(ours, theirs, atol=1e-5)
    assert max(ours) > 0.9 and ours[0] < 0.1


def test_two_calls_share_the_session_but_not_the_state():
    first, second = SharedSileroVADAnalyzer(), SharedSileroVADAnalyzer()
    assert first._model.session is second._model.session
    speech = speech_pcm16("Hello there.")
    confidences(first, speech)  # first has heard speech; second has heard nothing
    assert not np.array_equal(first._model._state, second._model._state)
    assert confidences(second, speech) == confidences(SharedSileroVADAnalyzer(), speech)


def test_smart_turn_shares_its_session_and_thread():
    first, second = SharedSmartTurnAnalyzer(), SharedSmartTurnAnalyzer()
    assert first._session is second._session
    assert first._model_executor is second._model_executor
    assert isinstance(first, LocalSmartTurnAnalyzerV3)
