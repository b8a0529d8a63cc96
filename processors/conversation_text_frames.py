"""Conversation text as typed frames for the client, shaped once for every serializer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pipecat.frames.frames import Frame
from pipecat.observers.base_observer import FramePushed

from processors.conversation_text import ConversationTextObserver
from processors.frames import BotTextMessageFrame, UserTranscriptMessageFrame


class ConversationTextFrames(ConversationTextObserver):
    """Queues a `BotTextMessageFrame` per sentence the bot says and a `UserTranscriptMessageFrame`
    per transcript, for a serializer to render one-to-one (the simple protocol's `bot_text` and
    `transcript`). Holds nothing beyond the reply in progress.

    Example::

        observer = ConversationTextFrames(worker.queue_frame)
    """

    def __init__(self, queue_frame: Callable[[Frame], Awaitable[None]], **kwargs):
        super().__init__(**kwargs)
        self._queue_frame = queue_frame
        self._pending: list[Frame] = []

    def on_user(self, text: str) -> None:
        self._pending.append(UserTranscriptMessageFrame.for_text(text, final=True))

    def on_user_partial(self, text: str) -> None:
        self._pending.append(UserTranscriptMessageFrame.for_text(text, final=False))

    def on_bot_sentence(self, text: str) -> None:
        self._pending.append(BotTextMessageFrame.for_text(text))

    async def on_push_frame(self, data: FramePushed):
        await super().on_push_frame(data)
        pending, self._pending = self._pending, []
        for frame in pending:
            await self._queue_frame(frame)
