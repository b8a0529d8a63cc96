"""Conversation text shaped once: sentences as the LLM writes them, spoken texts whole, bounded work."""

from __future__ import annotations

from pipecat.frames.frames import (
    Frame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSSpeakFrame,
)
from pipecat.observers.base_observer import FramePushed
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from processors.conversation_text import MAX_SENTENCE_CHARS, ConversationTextObserver


class Lines(ConversationTextObserver):
    def __init__(self):
        super().__init__()
        self.sentences: list[str] = []
        self.replies: list[str] = []

    def on_bot_sentence(self, text: str) -> None:
        self.sentences.append(text)

    def on_bot(self, text: str) -> None:
        self.replies.append(text)


async def show(observer: ConversationTextObserver, *frames: Frame) -> None:
    processor = FrameProcessor()
    for frame in frames:
        await observer.on_push_frame(
            FramePushed(processor, processor, frame, FrameDirection.DOWNSTREAM, 0, first_push=True)
        )


def reply(*tokens: str) -> list[Frame]:
    return [LLMFullResponseStartFrame(), *(LLMTextFrame(t) for t in tokens), LLMFullResponseEndFrame()]


async def test_sentences_go_out_as_they_are_written_even_when_a_token_straddles_the_end():
    lines = Lines()
    await show(lines, *reply("Paris is", " the capital.", " It is", " lovely", "! Bye"))
    assert lines.sentences == ["Paris is the capital.", "It is lovely!", "Bye"]
    assert lines.replies == ["Paris is the capital. It is lovely! Bye"]


async def test_spoken_texts_go_out_whole_and_are_never_matched_against_earlier_words():
    lines = Lines()
    await show(lines, *reply("Goodbye!"), TTSSpeakFrame("Goodbye!"))
    assert lines.sentences == ["Goodbye!", "Goodbye!"]


async def test_an_interrupted_reply_is_dropped_and_the_next_one_starts_clean():
    lines = Lines()
    await show(lines, LLMFullResponseStartFrame(), LLMTextFrame("Half a sen"), InterruptionFrame())
    await show(lines, *reply("Next."))
    assert lines.sentences == ["Next."] and lines.replies == ["Next."]


async def test_a_long_reply_without_sentence_ends_goes_out_in_bounded_pieces():
    lines = Lines()
    tokens = ["word "] * 5000  # 25,000 characters, no sentence end
    await show(lines, *reply(*tokens))
    assert all(len(sentence) <= MAX_SENTENCE_CHARS for sentence in lines.sentences)
    assert " ".join(lines.sentences).split() == ["word"] * 5000
