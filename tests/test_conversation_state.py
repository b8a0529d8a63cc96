"""The floor-tracking controller, frame by frame on a fake clock: when the bot counts as busy."""

from __future__ import annotations

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    InputAudioRawFrame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSSpeakFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)

from processors.conversation_state import ConversationState
from tests.support.clock import ManualClock


def make_state(handover: float = 6.0) -> tuple[ConversationState, ManualClock]:
    clock = ManualClock()
    return ConversationState(handover_secs=handover, clock=clock), clock


def test_busy_through_a_whole_reply_however_long_the_llm_takes():
    state, clock = make_state()
    state.observe(VADUserStartedSpeakingFrame())
    assert state.user_speaking and not state.bot_busy
    clock.skip(2)
    state.observe(VADUserStoppedSpeakingFrame())
    assert state.bot_busy  # STT finalising
    clock.skip(1)
    state.observe(UserStoppedSpeakingFrame())
    state.observe(LLMFullResponseStartFrame())
    clock.skip(120)  # a very slow LLM
    assert state.bot_busy
    state.observe(LLMTextFrame("Paris."))
    state.observe(LLMFullResponseEndFrame())
    clock.skip(3)  # TTS synthesising
    assert state.bot_busy
    state.observe(BotStartedSpeakingFrame())
    clock.skip(30)  # a long answer
    assert state.bot_busy
    state.observe(BotStoppedSpeakingFrame())
    assert not state.bot_busy
    assert state.waiting_since == clock.now()


def test_a_turn_that_never_gets_an_answer_stops_counting_as_busy_after_the_handover():
    state, clock = make_state(handover=6.0)
    state.observe(VADUserStoppedSpeakingFrame())  # VAD fired but STT produced nothing
    stopped = clock.now()
    clock.skip(5)
    assert state.bot_busy
    clock.skip(2)
    assert not state.bot_busy
    assert state.waiting_since == stopped + 6.0


def test_an_empty_llm_reply_ends_busy_at_once():
    state, clock = make_state()
    state.observe(LLMFullResponseStartFrame())
    state.observe(LLMTextFrame("  "))
    clock.skip(1)
    state.observe(LLMFullResponseEndFrame())
    assert not state.bot_busy
    assert state.waiting_since == clock.now()


def test_an_interruption_drops_the_reply_in_progress():
    state, _clock = make_state()
    state.observe(LLMFullResponseStartFrame())
    state.observe(BotStartedSpeakingFrame())
    state.observe(InterruptionFrame())
    state.observe(BotStoppedSpeakingFrame())
    assert not state.bot_busy


def test_bot_stopping_between_sentences_while_the_llm_still_generates_stays_busy():
    state, clock = make_state()
    state.observe(LLMFullResponseStartFrame())
    state.observe(BotStartedSpeakingFrame())
    state.observe(BotStoppedSpeakingFrame())
    clock.skip(60)
    assert state.bot_busy


def test_a_pushed_prompt_counts_as_busy_until_spoken():
    state, _clock = make_state()
    state.observe(TTSSpeakFrame("Are you still there?"))
    assert state.bot_busy
    state.observe(BotStartedSpeakingFrame())
    state.observe(BotStoppedSpeakingFrame())
    assert not state.bot_busy


def test_client_input_and_user_speech_are_timestamped():
    state, clock = make_state()
    clock.skip(4)
    state.observe(InputAudioRawFrame(audio=b"\0\0", sample_rate=16000, num_channels=1))
    assert state.last_client_input == clock.now()
    clock.skip(1)
    state.observe(VADUserStartedSpeakingFrame())
    assert state.last_user_speech == clock.now()
