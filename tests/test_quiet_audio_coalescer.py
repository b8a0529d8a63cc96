"""The quiet-audio coalescer: fewer frames to the VAD and beyond, and not one VAD decision moved."""

from __future__ import annotations

import numpy as np
import pytest
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.frames.frames import (
    Frame,
    InputAudioRawFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.tests.utils import run_test

from processors.quiet_audio_coalescer import QuietAudioCoalescer
from processors.shared_models import SharedSileroVADAnalyzer
from tests.support.speech import silence_pcm16, speech_pcm16

RATE = 16000
FRAME_BYTES = 640  # 20 ms, as clients send it


class TransportSide(FrameProcessor):
    """Counts the audio that has come in from the caller, as the transport delivers it."""

    def __init__(self):
        super().__init__(enable_direct_mode=True)
        self.delivered = 0

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            self.delivered += len(frame.audio)
        await self.push_frame(frame, direction)


class AfterTheVAD(FrameProcessor):
    """What reaches the rest of the pipeline: each VAD decision with how much of the caller's
    audio had come in when it was made, and how many audio frames made the trip."""

    def __init__(self, transport: TransportSide):
        super().__init__(enable_direct_mode=True)
        self._transport = transport
        self.decisions: list[tuple[str, int]] = []
        self.audio_frames = 0
        self.audio = bytearray()

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, (VADUserStartedSpeakingFrame, VADUserStoppedSpeakingFrame)):
            self.decisions.append((type(frame).__name__, self._transport.delivered))
        elif isinstance(frame, InputAudioRawFrame):
            self.audio_frames += 1
            self.audio += frame.audio
        await self.push_frame(frame, direction)


def low_noise(seconds: float, peak: int) -> bytes:
    rng = np.random.default_rng(7)
    return rng.integers(-peak, peak + 1, int(seconds * RATE), dtype=np.int16).tobytes()


def call(quiet) -> bytes:
    """Two questions with the caller's quiet around them (`quiet(seconds)` makes it)."""
    return (
        quiet(1.0)
        + speech_pcm16("What is the capital of France?", pad_secs=0.0)
        + quiet(2.0)
        + speech_pcm16("And what about Spain?", pad_secs=0.0)
        + quiet(1.5)
    )


async def through_the_vad(audio: bytes, coalesce: bool) -> AfterTheVAD:
    transport = TransportSide()
    after = AfterTheVAD(transport)
    vad = VADProcessor(
        vad_analyzer=SharedSileroVADAnalyzer(params=VADParams(stop_secs=0.2)), enable_direct_mode=True
    )
    stages = [transport, *([QuietAudioCoalescer()] if coalesce else []), vad, after]
    frames = [
        InputAudioRawFrame(audio[i : i + FRAME_BYTES], RATE, 1) for i in range(0, len(audio), FRAME_BYTES)
    ]
    await run_test(Pipeline(stages), frames_to_send=frames)
    return after


@pytest.mark.parametrize(
    "quiet",
    [silence_pcm16, lambda seconds: low_noise(seconds, peak=60)],
    ids=["digital-silence", "quiet-line-noise"],
)
async def test_quiet_frames_travel_together_and_no_vad_decision_moves(quiet):
    audio = call(quiet)
    plain = await through_the_vad(audio, coalesce=False)
    coalesced = await through_the_vad(audio, coalesce=True)
    assert [name for name, _ in plain.decisions].count("VADUserStoppedSpeakingFrame") == 2, plain.decisions
    # Each start and stop decided with the same audio in, at the same moment of the call.
    assert coalesced.decisions == plain.decisions
    assert bytes(coalesced.audio) == bytes(plain.audio) == audio  # every byte, in order
    assert coalesced.audio_frames < plain.audio_frames * 0.6, (coalesced.audio_frames, plain.audio_frames)


async def test_a_noisy_line_is_passed_on_frame_by_frame():
    """Line noise over the quiet threshold could be what the VAD counts: it is not held (only
    the near-silent edges of the recorded questions are)."""
    audio = call(lambda seconds: low_noise(seconds, peak=400))
    plain = await through_the_vad(audio, coalesce=False)
    coalesced = await through_the_vad(audio, coalesce=True)
    assert coalesced.decisions == plain.decisions
    assert coalesced.audio_frames > plain.audio_frames * 0.97, (coalesced.audio_frames, plain.audio_frames)
