"""Ends the conversation when the user's whole turn is a closing: for LLMs without tools.

A false ending is worse than none, so the rule is narrow: after normalising, the user's *entire*
turn (its final transcripts, or a typed message) must be a closing ("bye", "thanks, bye!", "no,
that's all, thanks", "you can hang up"), with only politeness around it. "Say bye to my sister
for me", "I said goodbye to him yesterday" or "bye the way…" are ordinary sentences that happen
to contain a farewell word, and a question ("that's all?") is not a closing either.
"""

from __future__ import annotations

import re

from loguru import logger
from pipecat.frames.frames import Frame, LLMContextFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from processors.frames import UserGoodbyeFrame

_THANKS = (
    r"(?:thanks|thank you|thanks a lot|thanks so much|thank you so much|thank you very much|"
    r"many thanks|cheers)"
)
# Each closing can be split into these pieces one way only ("bye bye" is "bye" + the tail's
# "bye", never a piece of its own): an ambiguous grammar backtracks exponentially on a near-miss.
_FAREWELL = (
    r"(?:bye|goodbye|good night|see you|see you later|see ya|"
    r"talk to you later|take care|have a (?:good|nice|great|lovely) (?:day|one|evening|night|weekend))"
)
_DONE = (
    r"(?:that's all|that is all|that's it|that is it|that will be all|that'll be all|that's everything|"
    r"that's all i need|that's all i needed|that's all i wanted|nothing else|i'm done|i am done|we're done|"
    r"we are done)"
)
_HANG_UP = r"(?:(?:you can |please |go ahead and |you may )?(?:hang up|end the call|end this call))"
_LEAD = rf"(?:(?:ok|okay|alright|all right|right|well|great|perfect|cool|no|nope|yes|yeah|oh|{_THANKS}) )*"
_TAIL = rf"(?: (?:then|now|for now|for today|{_THANKS}|{_FAREWELL}|{_DONE}|{_HANG_UP}))*"
_CLOSING = re.compile(rf"{_LEAD}(?:{_FAREWELL}|{_DONE}|{_HANG_UP}){_TAIL}")
# A closing is short; anything longer is conversation, and is never matched at all (bounded work
# whatever a transcript or a typed message holds).
MAX_CLOSING_WORDS = 12


def normalise(text: str) -> str:
    """Lower case, straight apostrophes, words only: "Good-bye, then!" -> "goodbye then"."""
    text = text.lower().replace("\u2019", "'").replace("good-bye", "goodbye").replace("good bye", "goodbye")
    return " ".join(re.sub(r"[^\w\s']", " ", text).split())


def is_closing(text: str) -> bool:
    """The whole utterance ends the conversation; a question never does."""
    if text.strip().endswith("?"):
        return False
    words = normalise(text)
    if words.count(" ") >= MAX_CLOSING_WORDS:
        return False
    return _CLOSING.fullmatch(words) is not None


def last_user_text(frame: LLMContextFrame) -> str | None:
    """The text of the context's last message if the user wrote it (the turn that just ended)."""
    messages = frame.context.get_messages()
    last = messages[-1] if messages else None
    if not isinstance(last, dict) or last.get("role") != "user":
        return None
    content = last.get("content")
    if isinstance(content, list):
        content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else None


class GoodbyeDetector(FrameProcessor):
    """Ends the session, instead of running the LLM, when the user's turn is a closing.

    Place it right after the user aggregator. At the end of each user turn the aggregator
    pushes an `LLMContextFrame` whose last message is the whole turn; if that is a closing, the
    frame is dropped (the LLM never answers it) and `UserGoodbyeFrame(goodbye)` goes on instead:
    the bot says the goodbye in full and the session ends with reason `user_goodbye`, through
    the same path as every other ending. Deciding on the finished turn, not on each transcript
    segment, keeps "bye… and one more thing" in the conversation. Once it has fired, later
    turns (words said over the goodbye) are not answered either.

    Example::

        GoodbyeDetector(goodbye="Thanks for calling. Bye!")
    """

    def __init__(self, *, goodbye: str, **kwargs):
        super().__init__(**{"enable_direct_mode": True, **kwargs})  # no queue hop per frame
        self._goodbye = goodbye
        self._fired = False

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMContextFrame) and direction == FrameDirection.DOWNSTREAM:
            if self._fired:
                return  # nothing is answered after the goodbye, e.g. words said over it
            said = None if frame.speculation else last_user_text(frame)
            if said is not None and is_closing(said):
                self._fired = True
                logger.info(f"{self}: the user said goodbye ({said[:80]!r}); ending the session")
                await self.push_frame(UserGoodbyeFrame(goodbye=self._goodbye, detail="you said goodbye"))
                return
        await self.push_frame(frame, direction)
