"""Deepgram's streaming TTS, speaking a reply's first sentence as soon as the LLM has written it.

Deepgram's TTS WebSocket synthesises the text it has been sent only when told to `Flush`
(developers.deepgram.com/docs/streaming-text-to-speech: "When you have queued enough text, you
can obtain the corresponding audio by sending a Flush"). Pipecat's `DeepgramTTSService` sends each
sentence as it is aggregated but flushes once, at the end of the LLM's reply, so nothing is heard
before the LLM has finished the whole reply: at 50 tokens/s every token after the first sentence
adds 20 ms of silence before the caller hears anything.

`SentenceFlushingDeepgramTTSService` also flushes right after the first sentence of each LLM
reply. The rest of the reply is still flushed at its end by Pipecat; the first sentence's audio
covers the wait, since an LLM writes many times faster than speech. Deepgram takes at most 20
flushes per 60 s and ignores (with a warning) any beyond, which would leave a reply unspoken, so
an early flush is sent only when no flush went out in the last 5 s (replies at least 5 s apart:
two flushes each stay under 24 a minute) and the last 60 s, with it and two closing flushes, stay
within 20. Over random schedules of replies 3-20 s apart this never takes a minute past 20 flushes
unless Pipecat's own closing flushes alone do (tests/test_deepgram_tts.py).

Pipecat ends the reply's audio context on every `Flushed` acknowledgement (a `TTSStoppedFrame`,
then removal). Deepgram acknowledges each `Flush` in order, so the acknowledgements of early
flushes are recognised by their place in the queue of flushes sent, and do not end the reply.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable

from loguru import logger
from pipecat.frames.frames import Frame, TTSSpeakFrame, TTSStoppedFrame
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.deepgram.tts import DeepgramTTSService

FLUSH_LIMIT = 20  # Deepgram: at most 20 Flush messages ...
FLUSH_WINDOW_SECS = 60.0  # ... every 60 seconds
# An early flush is sent only if the reply's own closing flush, and one more (a prompt or the
# goodbye spoken meanwhile), still fit in the window after it ...
CLOSING_FLUSHES_RESERVED = 2
# ... and no flush went out this recently (otherwise replies come too fast for two flushes each).
EARLY_FLUSH_SPACING_SECS = 5.0


class SentenceFlushingDeepgramTTSService(DeepgramTTSService):
    """`DeepgramTTSService` that flushes each LLM reply's first sentence at once (see the module)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, **kwargs):
        super().__init__(**kwargs)
        self._clock = clock
        self._flushes_sent: deque[float] = deque()  # when, within the last FLUSH_WINDOW_SECS
        # Per Flush sent, in order: was it an early one, and on which connection? A connection
        # since replaced will never acknowledge its flushes.
        self._acks_owed: deque[tuple[bool, object]] = deque()
        self._early_ack_closing: str | None = None  # the context whose removal the early ack skips
        self._speaking_text = False  # inside a TTSSpeakFrame: Pipecat flushes it whole at once
        self._reply_to_flush: str | None = None  # the LLM reply whose first sentence is still to come

    @property
    def early_flush_allowed(self) -> bool:
        """Whether one more flush now leaves room for the closing ones within Deepgram's budget."""
        now = self._clock()
        while self._flushes_sent and now - self._flushes_sent[0] >= FLUSH_WINDOW_SECS:
            self._flushes_sent.popleft()
        if self._flushes_sent and now - self._flushes_sent[-1] < EARLY_FLUSH_SPACING_SECS:
            return False
        return len(self._flushes_sent) + 1 + CLOSING_FLUSHES_RESERVED <= FLUSH_LIMIT

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        self._speaking_text = isinstance(frame, TTSSpeakFrame)
        try:
            await super().process_frame(frame, direction)
        finally:
            self._speaking_text = False

    async def on_turn_context_created(self, context_id: str):
        await super().on_turn_context_created(context_id)
        if not self._speaking_text:
            self._reply_to_flush = context_id

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        async for frame in super().run_tts(text, context_id):
            yield frame
        if context_id == self._reply_to_flush:
            self._reply_to_flush = None  # its first sentence: flushed now or not at all
            if self.early_flush_allowed:
                await self._send_flush(early=True)

    async def flush_audio(self, context_id: str | None = None):
        """Pipecat's flush, at the end of a reply or a spoken text: the one that closes it."""
        if context_id == self._reply_to_flush:
            self._reply_to_flush = None
        await self._send_flush(early=False)

    async def _send_flush(self, *, early: bool) -> None:
        """Send a Flush (Pipecat's own message), owing an acknowledgement only if it went out."""
        if self._websocket is None:
            return
        websocket = self._websocket
        self._acks_owed.append((early, websocket))  # before the send: the ack may come while it awaits
        try:
            await websocket.send(json.dumps({"type": "Flush"}))
        except Exception as e:
            self._acks_owed.pop()
            logger.warning(f"{self}: Flush not sent ({e})")
            return
        self._flushes_sent.append(self._clock())

    async def append_to_audio_context(self, context_id: str | None, frame):
        # Pipecat's receive loop turns every `Flushed` into this stop frame, then a removal.
        if isinstance(frame, TTSStoppedFrame) and self._acknowledges_early_flush():
            self._early_ack_closing = context_id  # the first sentence is out; the reply goes on
            return
        await super().append_to_audio_context(context_id, frame)

    def _acknowledges_early_flush(self) -> bool:
        """Whether the `Flushed` just read answers an early flush (and not a closing one)."""
        while self._acks_owed and self._acks_owed[0][1] is not self._websocket:
            self._acks_owed.popleft()  # sent on a connection since replaced: never acknowledged
        return bool(self._acks_owed) and self._acks_owed.popleft()[0]

    async def remove_audio_context(self, context_id: str | None):
        if self._early_ack_closing is not None and context_id == self._early_ack_closing:
            self._early_ack_closing = None
            return
        await super().remove_audio_context(context_id)

    async def on_audio_context_interrupted(self, context_id: str):
        if context_id == self._reply_to_flush:
            self._reply_to_flush = None
        await super().on_audio_context_interrupted(context_id)
