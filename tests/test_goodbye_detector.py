"""The goodbye phrase detector: whole-turn closings end the session, sentences that merely
mention a farewell never do (a false ending is worse than none)."""

from __future__ import annotations

import pytest
from pipecat.frames.frames import LLMContextFrame
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.tests.utils import run_test

from processors.frames import EndReason, UserGoodbyeFrame
from processors.goodbye_detector import GoodbyeDetector, is_closing

CLOSINGS = [
    "Bye.",
    "bye!",
    "Goodbye.",
    "Good-bye!",
    "Bye-bye.",
    "Bye bye",
    "Bye bye now.",
    "Goodbye now!",
    "Thanks, bye!",
    "Thank you, goodbye.",
    "OK, thanks, bye.",
    "Alright, bye for now.",
    "Okay, bye then.",
    "That's all, thanks.",
    "No, that's all, thank you.",
    "Nope, that's it. Bye!",
    "That's all I needed, thanks.",
    "Thank you so much, have a nice day!",
    "You can hang up.",
    "Please hang up now.",
    "Okay, you can end the call.",
    "Thanks, take care.",
    "See you later!",
    "Talk to you later, bye.",
    "I'm done, thanks.",
    "That\u2019s all, thanks.",  # a curly apostrophe, as some STTs write it
]

NOT_CLOSINGS = [
    "Say bye to my sister for me.",
    "I said goodbye to him yesterday.",
    "Bye the way, what time is it?",
    "By the way, what time is it?",
    "How do I say goodbye in French?",
    "Goodbye is a hard word to say.",
    "Don't hang up.",
    "Please don't hang up, I have another question.",
    "Can you hang up my coat?",
    "That's all?",
    "Is that all?",
    "Bye?",
    "That's all I wanted to ask, but what about the weather?",
    "Bye for now, but first tell me the weather.",
    "Thanks.",
    "Thank you!",
    "Okay.",
    "No.",
    "What is the capital of France?",
    "",
    "   ",
    "Goodbye Mr. Chips is my favourite book.",
    "I need to end the call with my bank.",
]


@pytest.mark.parametrize("text", CLOSINGS)
def test_a_whole_turn_that_is_a_closing_ends_the_conversation(text):
    assert is_closing(text)


@pytest.mark.parametrize("text", NOT_CLOSINGS)
def test_a_farewell_word_inside_a_sentence_does_not(text):
    assert not is_closing(text)


def context_frame(user_text: str) -> LLMContextFrame:
    return LLMContextFrame(
        context=LLMContext(
            messages=[{"role": "assistant", "content": "Hello!"}, {"role": "user", "content": user_text}]
        )
    )


async def test_a_closing_turn_becomes_the_goodbye_instead_of_an_llm_run():
    down, _ = await run_test(
        GoodbyeDetector(goodbye="Thanks for calling. Bye!"),
        frames_to_send=[context_frame("Thanks, bye!"), context_frame("And one more thing?")],
        expected_down_frames=[UserGoodbyeFrame],  # and nothing answered after it
    )
    goodbye = down[0]
    assert (goodbye.reason, goodbye.goodbye) == (EndReason.USER_GOODBYE, "Thanks for calling. Bye!")


async def test_an_ordinary_turn_goes_on_to_the_llm():
    await run_test(
        GoodbyeDetector(goodbye="Bye!"),
        frames_to_send=[context_frame("Say bye to my sister for me."), context_frame("Thanks.")],
        expected_down_frames=[LLMContextFrame, LLMContextFrame],
    )


async def test_an_assistant_or_developer_message_last_is_not_the_users_turn():
    frame = LLMContextFrame(
        context=LLMContext(
            messages=[{"role": "user", "content": "bye"}, {"role": "assistant", "content": "Bye"}]
        )
    )
    await run_test(
        GoodbyeDetector(goodbye="Bye!"), frames_to_send=[frame], expected_down_frames=[LLMContextFrame]
    )


@pytest.mark.parametrize(
    "text",
    [
        "bye " + "bye bye " * 2000 + "and one more thing",  # a near-miss: once exponential (ReDoS)
        "bye," * 2000 + "x",  # punctuation splits it into words only after normalising
        "thanks " * 13 + "bye",
    ],
)
def test_a_long_turn_is_conversation_and_is_not_matched_at_all(text):
    assert not is_closing(text)
