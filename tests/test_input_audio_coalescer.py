"""After the VAD the caller's audio goes on in 100 ms frames, in order with everything else."""

from __future__ import annotations

from pipecat.frames.frames import InputAudioRawFrame, VADUserStartedSpeakingFrame, VADUserStoppedSpeakingFrame
from pipecat.tests.utils import run_test

from processors.input_audio_coalescer import InputAudioCoalescer


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
