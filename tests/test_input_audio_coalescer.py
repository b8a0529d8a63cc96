"""After the VAD the caller's audio goes on in 100 ms frames, in order with everything else."""

from __future__ import annotations

from pipecat.frames.frames import (
    InputAudioRawFrame,
    STTMuteFrame,
    UserAudioRawFrame,
    UserSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.deepgram.stt import DeepgramSTTService
from pipecat.tests.utils import run_test

from pipeline.session import audio_to_transcripts
from processors.input_audio_coalescer import InputAudioCoalescer
from processors.moonshine_stt import MoonshineSTTService


def audio(index: int, *, sample_rate: int = 16000, ms: int = 20) -> InputAudioRawFrame:
    """A frame whose samples all carry its index, so order and loss show in the bytes."""
    samples = sample_rate * ms // 1000
    return InputAudioRawFrame(audio=bytes([index]) * 2 * samples, sample_rate=sample_rate, num_channels=1)


def audio_frames(frames) -> list[InputAudioRawFrame]:
    return [frame for frame in frames if isinstance(frame, InputAudioRawFrame)]


async def test_audio_goes_on_in_100_ms_frames_with_every_byte_in_order():
    sent = [audio(i) for i in range(12)]
    down, _ = await run_test(InputAudioCoalescer(), frames_to_send=sent, expected_down_frames=None)

    joined = audio_frames(down)
    assert [len(frame.audio) for frame in joined] == [3200, 3200, 1280]  # the last two flushed by the end
    assert b"".join(frame.audio for frame in joined) == b"".join(frame.audio for frame in sent)
    assert all(frame.sample_rate == 16000 and frame.num_frames == len(frame.audio) // 2 for frame in joined)


async def test_every_other_frame_comes_after_exactly_the_audio_sent_before_it():
    """The VAD's start and stop (and push-to-talk, interruptions, the end) must reach the STT
    and the turn analyzer after the audio that preceded them and before the audio that followed:
    the stop flushes the user's last words to the STT before its `Finalize`."""
    sent = [audio(0), audio(1), VADUserStartedSpeakingFrame(), audio(2), audio(3), audio(4)]
    sent += [VADUserStoppedSpeakingFrame(), audio(5)]
    down, _ = await run_test(InputAudioCoalescer(), frames_to_send=sent, expected_down_frames=None)

    def audio_between(kinds_before: int, kinds_upto: int) -> bytes:
        return b"".join(frame.audio for frame in audio_frames(down[kinds_before:kinds_upto]))

    start = next(i for i, frame in enumerate(down) if isinstance(frame, VADUserStartedSpeakingFrame))
    stop = next(i for i, frame in enumerate(down) if isinstance(frame, VADUserStoppedSpeakingFrame))
    assert audio_between(0, start) == audio(0).audio + audio(1).audio
    assert audio_between(start, stop) == audio(2).audio + audio(3).audio + audio(4).audio
    assert audio_between(stop, len(down)) == audio(5).audio
    assert len(audio_frames(down[start:stop])) == 1  # joined between the events


async def test_audio_of_another_rate_is_not_joined_to_what_is_held():
    sent = [audio(1), audio(2, sample_rate=8000), audio(3, sample_rate=8000)]
    down, _ = await run_test(InputAudioCoalescer(), frames_to_send=sent, expected_down_frames=None)

    joined = audio_frames(down)
    assert [(frame.sample_rate, frame.audio) for frame in joined] == [
        (16000, audio(1).audio),
        (8000, audio(2, sample_rate=8000).audio + audio(3, sample_rate=8000).audio),
    ]


async def test_a_frame_longer_than_the_limit_goes_on_whole_and_alone():
    sent = [audio(1), audio(2, ms=250), audio(3)]
    down, _ = await run_test(InputAudioCoalescer(), frames_to_send=sent, expected_down_frames=None)

    expected = [audio(1).audio, audio(2, ms=250).audio, audio(3).audio]
    assert [frame.audio for frame in audio_frames(down)] == expected


async def test_the_vads_still_speaking_heartbeat_does_not_cut_the_audio_short():
    """The VAD sends it every 0.2 s of speech; flushing for it would leave the STT stubs."""
    sent = [audio(0), audio(1), UserSpeakingFrame(), audio(2), audio(3), audio(4), audio(5)]
    down, _ = await run_test(InputAudioCoalescer(), frames_to_send=sent, expected_down_frames=None)

    assert [len(frame.audio) for frame in audio_frames(down)] == [3200, 640]
    assert any(isinstance(frame, UserSpeakingFrame) for frame in down)


async def test_another_kind_of_audio_frame_is_not_joined_and_flushes_what_is_held():
    """A user's own audio frame (another kind) is never merged into the caller's audio."""
    user_audio = UserAudioRawFrame(audio=bytes([9]) * 640, sample_rate=16000, num_channels=1, user_id="u")
    sent = [audio(0), user_audio, audio(1), audio(2)]
    down, _ = await run_test(InputAudioCoalescer(), frames_to_send=sent, expected_down_frames=None)

    joined = audio_frames(down)
    assert [type(frame) for frame in joined] == [InputAudioRawFrame, UserAudioRawFrame, InputAudioRawFrame]
    assert [frame.audio for frame in joined] == [
        audio(0).audio,
        user_audio.audio,
        audio(1).audio + audio(2).audio,
    ]


async def test_upstream_frames_pass_through():
    await run_test(
        InputAudioCoalescer(),
        frames_to_send=[STTMuteFrame(mute=True)],
        frames_to_send_direction=FrameDirection.UPSTREAM,
        expected_up_frames=[STTMuteFrame],
    )


def test_the_audio_is_joined_before_a_streaming_stt_and_after_the_offline_one():
    deepgram = DeepgramSTTService(api_key="test")
    assert [type(p) for p in audio_to_transcripts(deepgram)] == [InputAudioCoalescer, DeepgramSTTService]
    moonshine = MoonshineSTTService(transcriber=None)
    assert [type(p) for p in audio_to_transcripts(moonshine)] == [MoonshineSTTService, InputAudioCoalescer]
