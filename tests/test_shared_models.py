"""Per-process Silero and smart-turn: same answers as Pipecat's per-call models, state kept apart."""

from __future__ import annotations

import asyncio
import gc
import threading

import numpy as np
import pytest
from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams, VADState

from processors.shared_models import (
    FAST_TURN_MAX_CALLS,
    SharedSileroVADAnalyzer,
    SharedSmartTurnAnalyzer,
    smart_turn_threads,
    vad_model_session,
)
from processors.silero_batcher import SileroBatcher, SileroStream
from processors.vad_volume import RollingVolumeTracker
from tests.support.speech import levels_pcm16, noise_pcm16, silence_pcm16, speech_pcm16
from tests.support.vad import frames, run_alone, speech_turns


class PipecatReference(SileroVADAnalyzer):
    """Pipecat's own per-call Silero analyzer, noting the confidence and the (smoothed) volume of
    every window it scores."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.confidences: list[float] = []
        self.volumes: list[float] = []

    def voice_confidence(self, buffer: bytes) -> float:
        confidence = super().voice_confidence(buffer)  # a one-element array
        self.confidences.append(np.asarray(confidence).item())
        return confidence

    def _get_smoothed_volume(self, audio: bytes) -> float:
        volume = super()._get_smoothed_volume(audio)
        self.volumes.append(volume)
        return volume


class Ours(SharedSileroVADAnalyzer):
    """Ours, noting confidences and volumes the same way."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.confidences: list[float] = []
        self.volumes: list[float] = []

    def voice_confidence(self, buffer: bytes) -> float:
        confidence = super().voice_confidence(buffer)
        self.confidences.append(confidence)
        return confidence

    def _get_smoothed_volume(self, audio: bytes) -> float:
        volume = super()._get_smoothed_volume(audio)
        self.volumes.append(volume)
        return volume


def new(cls, sample_rate: int = 16000, **kwargs):
    analyzer = cls(params=VADParams(stop_secs=0.2), **kwargs)
    analyzer.set_sample_rate(sample_rate)
    return analyzer


def question(sample_rate: int = 16000) -> bytes:
    return (
        silence_pcm16(0.5, sample_rate)
        + speech_pcm16("What is the capital of France?", sample_rate)
        + silence_pcm16(1.0, sample_rate)
    )


def conversation(sample_rate: int = 16000) -> bytes:
    """Speech, a pause long enough for Silero's periodic model reset (2 s of audio), speech again."""
    return (
        silence_pcm16(0.3, sample_rate)
        + speech_pcm16("Hello there, how are you today?", sample_rate)
        + silence_pcm16(2.5, sample_rate)
        + speech_pcm16("And what about Spain?", sample_rate)
        + silence_pcm16(0.6, sample_rate)
    )


@pytest.mark.parametrize("sample_rate", [16000, 8000])
@pytest.mark.parametrize("audio", [question, conversation, levels_pcm16])
async def test_silence_goes_unscored_and_speech_is_found_where_pipecats_vad_finds_it(audio, sample_rate):
    """Windows of digital silence while the caller is quiet are not sent to Silero. Every start and
    stop of speech stays where Pipecat's VAD puts it, give or take two frames (after a pause too
    short for Silero's periodic reset the model is taken up approximately): less than Pipecat's
    own spread when the same audio merely comes a second later (its model then heard more silence)."""
    pcm16 = audio(sample_rate)
    theirs = speech_turns(await run_alone(new(PipecatReference, sample_rate), pcm16, sample_rate))
    batcher = SileroBatcher.for_running_loop(vad_model_session())
    scored_before = batcher.windows
    call = new(Ours, sample_rate)
    ours = speech_turns(await run_alone(call, pcm16, sample_rate))

    assert len(ours) == len(theirs) >= 2
    for (our_frame, our_state), (their_frame, their_state) in zip(ours, theirs, strict=True):
        assert our_state == their_state and abs(our_frame - their_frame) <= 2
    assert batcher.windows - scored_before < 0.8 * len(call.volumes)  # a fifth or more were silence


@pytest.mark.parametrize("sample_rate", [16000, 8000])
async def test_after_silence_the_model_scores_exactly_as_pipecats(sample_rate):
    """Before the first words and across a pause long enough for Silero's periodic reset, the
    model is taken up exactly where scoring the silence would have left it: counted from the
    last reset, which falls 2 s into a long silence."""
    pcm16 = silence_pcm16(3.0, sample_rate) + conversation(sample_rate)
    reference, call = new(PipecatReference, sample_rate), new(Ours, sample_rate)
    theirs = await run_alone(reference, pcm16, sample_rate)
    ours = await run_alone(call, pcm16, sample_rate)

    scored = [i for i, confidence in enumerate(call.confidences) if confidence != 0.0]
    assert len(call.confidences) - len(scored) > 150  # the silence went unscored
    np.testing.assert_allclose(
        [call.confidences[i] for i in scored], [reference.confidences[i] for i in scored], atol=1e-5
    )
    assert ours == theirs


async def test_faint_noise_is_scored_like_any_sound():
    """Only digital silence goes unscored: a line with faint hiss (-61 dBFS) is scored window for
    window, as Pipecat scores it."""
    hiss = noise_pcm16(1.0, 16000, 30)
    pcm16 = hiss + speech_pcm16("What is the capital of France?", pad_secs=0.0) + hiss
    batcher = SileroBatcher.for_running_loop(vad_model_session())
    scored_before = batcher.windows
    call = new(Ours)
    ours = await run_alone(call, pcm16)
    assert batcher.windows - scored_before == len(call.volumes)
    assert ours == await run_alone(new(PipecatReference), pcm16)


async def test_a_stream_taken_up_after_silence_scores_as_one_that_heard_the_silence():
    """Unscored silence leaves the model as scoring it would have; a fresh model would hear the
    next words differently."""
    session = vad_model_session()
    batcher = SileroBatcher.for_running_loop(session)
    silence = np.zeros(512, dtype=np.float32)
    pcm = np.frombuffer(speech_pcm16("Hello there, how are you today?", pad_secs=0.0), np.int16)
    windows = [pcm[i : i + 512].astype(np.float32) / 32768.0 for i in range(0, 512 * 30, 512)]
    heard, taken_up, fresh = SileroStream(16000), SileroStream(16000), SileroStream(16000)
    for _ in range(20):
        await batcher.score(heard, silence)
    taken_up.resume_after_silence(session, 20)

    fresh_errors = []
    for window in windows:
        expected = await batcher.score(heard, window)
        assert await batcher.score(taken_up, window) == pytest.approx(expected, abs=1e-5)
        fresh_errors.append(abs(await batcher.score(fresh, window) - expected))
    assert max(fresh_errors) > 1e-3


async def test_shared_vad_decides_exactly_like_pipecats():
    reference, call = new(PipecatReference), new(Ours, skip_silence=False)
    theirs = await run_alone(reference, question())
    ours = await run_alone(call, question())
    assert ours == theirs
    assert VADState.SPEAKING in ours and ours[-1] == VADState.QUIET
    np.testing.assert_allclose(call.volumes, reference.volumes, rtol=0, atol=1e-12)


@pytest.mark.parametrize("sample_rate", [16000, 8000])
async def test_volume_gate_measures_and_decides_like_pipecats(sample_rate):
    """Speech loud, quiet and around the gate, between silence and noise: every window's volume
    is Pipecat's, and so is every state, including where the volume alone kept speech out."""
    audio = levels_pcm16(sample_rate)
    reference, call = new(PipecatReference, sample_rate), new(Ours, sample_rate, skip_silence=False)
    theirs = await run_alone(reference, audio, sample_rate)
    ours = await run_alone(call, audio, sample_rate)

    assert isinstance(call._volume_tracker, RollingVolumeTracker)
    assert len(call.volumes) == len(reference.volumes) > 200
    np.testing.assert_allclose(call.volumes, reference.volumes, rtol=0, atol=1e-12)
    assert ours == theirs
    assert VADState.SPEAKING in ours
    params = reference.params
    gated = [
        c >= params.confidence and v < params.min_volume
        for c, v in zip(reference.confidences, reference.volumes, strict=True)
    ]
    assert any(gated)  # the volume, not Silero, decided some windows


@pytest.mark.parametrize("sample_rate", [16000, 8000])
async def test_two_interleaved_calls_each_get_pipecats_confidences(sample_rate):
    """Two calls scored in the same batches, window for window, keep apart what each heard."""
    audios = [conversation(sample_rate), question(sample_rate) + question(sample_rate)]
    length = max(map(len, audios))
    audios = [audio + bytes(length - len(audio)) for audio in audios]
    references = [new(PipecatReference, sample_rate) for _ in audios]
    expected = [
        await run_alone(ref, audio, sample_rate) for ref, audio in zip(references, audios, strict=True)
    ]

    calls = [new(Ours, sample_rate, skip_silence=False) for _ in audios]
    states: list[list[VADState]] = [[] for _ in calls]
    batcher = SileroBatcher.for_running_loop(vad_model_session())
    runs, windows = batcher.runs, batcher.windows
    for pair in zip(*(frames(audio, sample_rate) for audio in audios), strict=True):
        results = await asyncio.gather(*(call.analyze_audio(f) for call, f in zip(calls, pair, strict=True)))
        for call_states, state in zip(states, results, strict=True):
            call_states.append(state)

    assert batcher.runs - runs < batcher.windows - windows  # the calls' windows went through together
    for call, reference, ours, theirs in zip(calls, references, states, expected, strict=True):
        assert len(call.confidences) == len(reference.confidences) > 100
        np.testing.assert_allclose(call.confidences, reference.confidences, atol=1e-5)
        assert ours == theirs
        assert VADState.SPEAKING in ours


async def test_concurrent_calls_share_one_inference_but_keep_their_own_state():
    audios = [
        question(),
        silence_pcm16(0.3) + speech_pcm16("Hello there, how are you today?") + silence_pcm16(1.2),
        silence_pcm16(len(question()) / 32000),
    ]
    audios = [a[: min(map(len, audios))] for a in audios]
    analyzers = [new(Ours, skip_silence=False) for _ in audios]
    batcher = SileroBatcher.for_running_loop(vad_model_session())
    runs, windows = batcher.runs, batcher.windows

    states = await asyncio.gather(*(run_alone(a, audio) for a, audio in zip(analyzers, audios, strict=True)))

    for ours, audio in zip(states, audios, strict=True):
        assert ours == await run_alone(new(PipecatReference), audio)
    assert VADState.SPEAKING in states[0] and VADState.SPEAKING not in states[2]
    scored = batcher.windows - windows
    assert scored >= 3 * (len(audios[0]) // 1024 - 1)
    assert batcher.runs - runs <= scored / 2.5  # three calls' windows went through together


class HeldSileroSession:
    """The real Silero session, each run held until the test lets it go."""

    def __init__(self):
        self.entered, self.release = threading.Event(), threading.Event()
        self.batch_sizes: list[int] = []
        self.threads: list[int] = []

    def run(self, outputs, feeds):
        self.threads.append(threading.get_ident())
        self.batch_sizes.append(len(feeds["input"]))
        self.entered.set()
        self.release.wait(timeout=2)
        return vad_model_session().run(outputs, feeds)


async def test_silero_runs_off_the_event_loop_and_windows_queued_meanwhile_go_as_the_next_batch():
    """The event loop carries every call's frames: it must not wait while Silero computes."""
    audio = np.frombuffer(question(), np.int16).astype(np.float32) / 32768.0
    windows = [audio[i * 512 : (i + 1) * 512] for i in range(40, 43)]
    held = HeldSileroSession()
    batcher = SileroBatcher(held)
    streams = [SileroStream(16000) for _ in windows]

    try:
        first = batcher.score(streams[0], windows[0])
        await asyncio.to_thread(held.entered.wait, 2)
        assert not first.done()
        # Two windows in different event-loop turns while the first batch is being scored.
        second = batcher.score(streams[1], windows[1])
        for _ in range(3):
            await asyncio.sleep(0)
        third = batcher.score(streams[2], windows[2])
    finally:
        held.release.set()
    scores = await asyncio.wait_for(asyncio.gather(first, second, third), 5)

    assert held.batch_sizes == [1, 2]
    assert threading.get_ident() not in held.threads
    alone = SileroBatcher(vad_model_session())
    expected = [await alone.score(SileroStream(16000), window) for window in windows]
    np.testing.assert_allclose(scores, expected, atol=1e-6)
    assert len(set(scores)) == 3 and min(scores) > 0  # real scores, not a failed batch's zeros


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
