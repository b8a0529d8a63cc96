"""Push-to-talk takes effect in order with the audio the client sent before the button."""

from __future__ import annotations

from pipecat.frames.frames import (
    InputAudioRawFrame,
    LLMTextFrame,
    STTMuteFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.tests.utils import run_test

from processors.frames import PushToTalkFrame
from processors.push_to_talk import PushToTalkGate
from tests.support.clock import AdvanceClockFrame, ClockDriver, ManualClock

FRAME = bytes(640)  # 20 ms at 16 kHz


def audio() -> InputAudioRawFrame:
    return InputAudioRawFrame(audio=FRAME, sample_rate=16000, num_channels=1)


async def test_a_release_that_overtakes_the_last_audio_waits_for_it():
    """The transport's receive task can deliver the release before its audio task has pushed the
    audio the client sent ahead of it; muting the STT then would cut the user's last words."""
    sent = [
        PushToTalkFrame(active=True, after_audio_secs=0.0),
        audio(),
        audio(),
        PushToTalkFrame(active=False, after_audio_secs=0.08),  # four frames were sent before it
        audio(),
        audio(),
        audio(),  # sent after the release
    ]
    down, _ = await run_test(PushToTalkGate(), frames_to_send=sent, expected_down_frames=None)

    kinds = [type(frame) for frame in down]
    audio_before_stop = kinds[: kinds.index(VADUserStoppedSpeakingFrame)].count(InputAudioRawFrame)
    assert audio_before_stop == 4
    mutes = [frame.mute for frame in down if isinstance(frame, STTMuteFrame)]
    assert mutes == [False, True]
    assert kinds.index(VADUserStartedSpeakingFrame) < kinds.index(InputAudioRawFrame)
    assert kinds.count(InputAudioRawFrame) == 5


async def test_buttons_without_audio_ahead_of_them_take_effect_at_once():
    sent = [PushToTalkFrame(active=True), PushToTalkFrame(active=False)]
    down, _ = await run_test(PushToTalkGate(), frames_to_send=sent, expected_down_frames=None)

    kinds = [type(frame) for frame in down]
    assert kinds.index(VADUserStartedSpeakingFrame) < kinds.index(VADUserStoppedSpeakingFrame)
    assert [frame.mute for frame in down if isinstance(frame, STTMuteFrame)] == [False, True]


async def test_buttons_whose_audio_never_comes_are_held_a_bounded_while():
    """A client flooding `ptt` (or audio the transport dropped) cannot make the gate hold buttons
    without end: past the bound the oldest takes effect."""
    late = [PushToTalkFrame(active=i % 2 == 0, after_audio_secs=10.0) for i in range(40)]
    down, _ = await run_test(PushToTalkGate(), frames_to_send=late, expected_down_frames=None)

    applied = [frame for frame in down if isinstance(frame, PushToTalkFrame)]
    assert len(applied) == 40 - PushToTalkGate.MAX_WAITING_BUTTONS
    assert [frame.active for frame in applied] == [i % 2 == 0 for i in range(len(applied))]


async def test_a_release_whose_audio_never_comes_takes_effect_after_a_bounded_wait():
    """Audio the client announced but the gate never sees (dropped on the way, or the client
    stopped sending) must not leave the button down and the turn open."""
    clock = ManualClock()
    sent = [
        PushToTalkFrame(active=True, after_audio_secs=0.0),
        audio(),
        PushToTalkFrame(active=False, after_audio_secs=0.06),  # two of its three frames never come
        AdvanceClockFrame(seconds=PushToTalkGate.MAX_WAIT_SECS * 0.8),
        LLMTextFrame("still waiting"),
        AdvanceClockFrame(seconds=PushToTalkGate.MAX_WAIT_SECS * 0.4),
        LLMTextFrame("waited long enough"),
    ]
    pipeline = Pipeline([ClockDriver(clock), PushToTalkGate(clock=clock)])
    down, _ = await run_test(pipeline, frames_to_send=sent, expected_down_frames=None)

    kinds = [type(frame) for frame in down]
    stop = kinds.index(VADUserStoppedSpeakingFrame)
    assert [frame.text for frame in down[:stop] if isinstance(frame, LLMTextFrame)] == ["still waiting"]
    assert [frame.mute for frame in down if isinstance(frame, STTMuteFrame)] == [False, True]
