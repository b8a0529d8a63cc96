"""Idle, silence and max-duration clocks and the single end path.

The clocks run on a `ManualClock` moved by `AdvanceClockFrame`s in the frame list, so what
fires when does not depend on the machine's speed; results are asserted through frame order.
"""

from __future__ import annotations

from collections.abc import Callable

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    EndWorkerFrame,
    Frame,
    InputAudioRawFrame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSSpeakFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.tests.utils import SleepFrame, run_test

from processors.client_audio_ticker import ClientAudioTicker
from processors.conversation_state import ConversationState
from processors.conversation_tracker import ConversationTracker
from processors.frames import (
    ClientAudioTickFrame,
    EndReason,
    EndSessionFrame,
    IdleTimeoutFrame,
    MaxDurationFrame,
    SessionEndedMessageFrame,
    SessionEndingFrame,
    SilenceTimeoutFrame,
)
from processors.idle_timeout import IdleTimeoutProcessor
from processors.max_duration import MaxDurationProcessor
from processors.session_end import SessionEndProcessor
from processors.silence_timeout import SilenceTimeoutProcessor
from tests.support.clock import AdvanceClockFrame, ClockDriver, ManualClock

HANDOVER_SECS = 0.2  # end of speech -> reply: shortened, so a test can outlast it many times


def wait(seconds: float) -> AdvanceClockFrame:
    return AdvanceClockFrame(seconds=seconds)


def audio_for(seconds: float, every: float = 0.1) -> list[Frame]:
    """A client streaming audio, as the clocks see it: a tick every `every` seconds."""
    frames: list[Frame] = []
    for _ in range(round(seconds / every)):
        frames += [ClientAudioTickFrame(), wait(every)]
    return frames


def kinds(frames, *, skip=(InputAudioRawFrame, ClientAudioTickFrame)) -> list[type]:
    return [type(f) for f in frames if not isinstance(f, skip)]


async def run_clock(make: Callable[[ConversationState], FrameProcessor], frames: list[Frame]):
    """Run a clock as in a session: behind the tracker that feeds the session's one state."""
    clock = ManualClock()
    state = ConversationState(handover_secs=HANDOVER_SECS, clock=clock)
    pipeline = Pipeline([ClockDriver(clock), ConversationTracker(state), make(state)])
    return await run_test(pipeline, frames_to_send=frames)


def idle(timeout_secs: float = 0.3, **params) -> Callable[[ConversationState], FrameProcessor]:
    return lambda state: IdleTimeoutProcessor(state=state, timeout_secs=timeout_secs, **params)


def silence(**overrides) -> Callable[[ConversationState], FrameProcessor]:
    params = dict(timeout_secs=0.3, prompt="Are you still there?", prompts=1, goodbye="Bye")
    return lambda state: SilenceTimeoutProcessor(state=state, **{**params, **overrides})


async def test_the_ticker_stops_input_audio_and_says_it_still_flows():
    microphone = [InputAudioRawFrame(audio=bytes(320), sample_rate=16000, num_channels=1), SleepFrame(0.05)]
    down, _ = await run_test(ClientAudioTicker(), frames_to_send=[*microphone * 20, LLMTextFrame("marker")])
    assert not any(isinstance(f, InputAudioRawFrame) for f in down)
    ticks = sum(isinstance(f, ClientAudioTickFrame) for f in down)
    assert 2 <= ticks <= 6  # every 0.25 s over 1 s of audio sent as 20 frames
    assert isinstance(down[-1], LLMTextFrame)  # everything else passes through


async def test_idle_fires_when_the_client_sends_nothing():
    down, _ = await run_clock(idle(goodbye="Bye"), [wait(0.8)])
    assert kinds(down) == [IdleTimeoutFrame]
    assert down[0].reason == EndReason.IDLE_TIMEOUT and down[0].goodbye == "Bye"


async def test_idle_never_fires_while_the_llm_takes_longer_than_the_handover_and_the_timeout():
    down, _ = await run_clock(
        idle(),
        [
            VADUserStartedSpeakingFrame(),
            VADUserStoppedSpeakingFrame(),
            LLMFullResponseStartFrame(),
            wait(12.0),  # 60 hand-overs and 40 idle timeouts of thinking, no client input at all
            LLMTextFrame("Paris is the capital."),
            LLMFullResponseEndFrame(),
            BotStartedSpeakingFrame(),
            wait(0.6),  # speaking longer than the timeout
            BotStoppedSpeakingFrame(),
            wait(0.8),  # now the clock runs
        ],
    )
    assert kinds(down)[-2:] == [BotStoppedSpeakingFrame, IdleTimeoutFrame]
    assert kinds(down).count(IdleTimeoutFrame) == 1


async def test_client_input_keeps_the_idle_clock_from_firing():
    down, _ = await run_clock(idle(), [*audio_for(1.0), LLMTextFrame("marker"), wait(0.8)])
    assert kinds(down) == [LLMTextFrame, IdleTimeoutFrame]


async def test_silence_prompts_then_says_goodbye():
    down, _ = await run_clock(
        silence(),
        [
            *audio_for(0.5),  # prompt due at 0.3 s
            BotStartedSpeakingFrame(),
            *audio_for(0.2),
            BotStoppedSpeakingFrame(),  # fresh timer from here
            *audio_for(0.6),
        ],
    )
    assert kinds(down) == [
        TTSSpeakFrame,
        BotStartedSpeakingFrame,
        BotStoppedSpeakingFrame,
        SilenceTimeoutFrame,
    ]
    assert down[[type(f) for f in down].index(TTSSpeakFrame)].text == "Are you still there?"


async def test_user_speech_after_the_prompt_resets_the_escalation():
    down, _ = await run_clock(
        silence(),
        [
            *audio_for(0.5),
            BotStartedSpeakingFrame(),
            BotStoppedSpeakingFrame(),
            VADUserStartedSpeakingFrame(),
            *audio_for(0.6),  # speaking: the silence clock does not run
            VADUserStoppedSpeakingFrame(),
            *audio_for(0.8),  # silent again: a prompt again, not the goodbye
        ],
    )
    assert kinds(down).count(TTSSpeakFrame) == 2
    assert SilenceTimeoutFrame not in kinds(down)


async def test_zero_prompts_goes_straight_to_the_goodbye():
    down, _ = await run_clock(silence(prompts=0), audio_for(0.6))
    assert kinds(down) == [SilenceTimeoutFrame]


async def test_silence_leaves_a_client_that_stopped_sending_to_the_idle_clock():
    down, _ = await run_clock(silence(), [wait(5.0)])
    assert kinds(down) == []


async def test_after_a_network_stall_the_overdue_prompt_comes_when_audio_resumes_not_a_timeout_later():
    down, _ = await run_clock(
        silence(timeout_secs=2.0),
        [
            *audio_for(0.5),
            wait(3.0),  # a stall: no audio at all (the idle clock's business, not silence)
            ClientAudioTickFrame(),  # audio again at 3.5 s: nobody has spoken for 3.5 s
            wait(0.2),
            LLMTextFrame("marker"),
            *audio_for(0.5),
        ],
    )
    assert kinds(down)[:2] == [TTSSpeakFrame, LLMTextFrame]


async def test_a_zero_timeout_is_off():
    down, _ = await run_clock(silence(timeout_secs=0), [*audio_for(0.6), wait(0.4)])
    assert kinds(down) == []
    down, _ = await run_clock(idle(timeout_secs=0), [wait(0.6)])
    assert kinds(down) == []


async def test_max_duration_interrupts_and_ends():
    clock = ManualClock()
    pipeline = Pipeline(
        [ClockDriver(clock), MaxDurationProcessor(max_secs=0.3, goodbye="Time is up", clock=clock)]
    )
    down, up = await run_test(pipeline, frames_to_send=[wait(0.25), LLMTextFrame("marker"), wait(0.1)])
    assert kinds(down) == [LLMTextFrame, InterruptionFrame, MaxDurationFrame]
    assert kinds(up) == [InterruptionFrame]
    assert down[2].goodbye == "Time is up"


async def test_session_end_speaks_the_goodbye_tells_the_client_and_ends_once():
    ender = SessionEndProcessor()
    reasons = []

    @ender.event_handler("on_session_ending")
    async def on_session_ending(processor, reason):
        reasons.append(reason)

    down, _ = await run_test(
        ender,
        frames_to_send=[
            SilenceTimeoutFrame(goodbye="Goodbye!"),
            SleepFrame(0.1),
            InterruptionFrame(),  # the caller talks over the goodbye
            IdleTimeoutFrame(goodbye="Another goodbye"),
        ],
        send_end_frame=False,
    )
    assert kinds(down)[:3] == [TTSSpeakFrame, SessionEndedMessageFrame, EndWorkerFrame]
    speak, notice, end = down[:3]
    assert speak.text == "Goodbye!" and not speak.append_to_context
    assert notice.message == {"type": "session-ended", "reason": "silence_timeout"}
    assert end.reason == "silence_timeout"
    assert InterruptionFrame not in kinds(down)
    assert reasons == [EndReason.SILENCE_TIMEOUT]


async def test_session_end_without_goodbye():
    down, _ = await run_test(
        SessionEndProcessor(), frames_to_send=[EndSessionFrame(reason=EndReason.ERROR)], send_end_frame=False
    )
    assert kinds(down)[:2] == [SessionEndedMessageFrame, EndWorkerFrame]


async def test_nothing_is_spoken_after_the_goodbye():
    """A reply, a prompt or a greeting still on its way when the ending starts is dropped: the
    goodbye is the last thing the bot says."""
    down, up = await run_test(
        SessionEndProcessor(),
        frames_to_send=[
            IdleTimeoutFrame(goodbye="Goodbye!"),
            LLMFullResponseStartFrame(),
            LLMTextFrame("A late reply."),
            LLMFullResponseEndFrame(),
            TTSSpeakFrame("Hello! How can I help you today?"),
        ],
        send_end_frame=False,
    )
    assert [f.text for f in down if isinstance(f, TTSSpeakFrame | LLMTextFrame)] == ["Goodbye!"]
    assert SessionEndingFrame in [type(f) for f in up]  # the user is muted from here
