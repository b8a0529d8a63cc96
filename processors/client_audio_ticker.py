"""Ends input audio's trip once nothing downstream needs it; a tick a few times a second says it flows."""

from __future__ import annotations

import time

from pipecat.frames.frames import Frame, InputAudioRawFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from processors.frames import ClientAudioTickFrame

TICK_SECS = 0.25


class ClientAudioTicker(FrameProcessor):
    """Drops `InputAudioRawFrame`s and pushes a `ClientAudioTickFrame` at most every `tick_secs`.

    Goes right after the user aggregator, the last processor that uses input audio. Downstream
    of it (LLM, our clocks, TTS, output transport, assistant aggregator) nothing listens to
    the caller's audio, yet each audio frame would cross all of them and every observer: about
    half of the per-frame work of a session (bench/README.md).

    Example::

        Pipeline([..., stt, user_aggregator, ClientAudioTicker(), llm, ...])
    """

    def __init__(self, *, tick_secs: float = TICK_SECS, **kwargs):
        super().__init__(**{"enable_direct_mode": True, **kwargs})
        self._tick_secs = tick_secs
        self._last_tick = float("-inf")

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if not isinstance(frame, InputAudioRawFrame):
            await self.push_frame(frame, direction)
            return
        now = time.monotonic()
        if now - self._last_tick >= self._tick_secs:
            self._last_tick = now
            await self.push_frame(ClientAudioTickFrame(), direction)
