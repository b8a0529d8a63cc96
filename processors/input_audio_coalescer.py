"""Joins the caller's 20 ms audio frames into frames of up to 100 ms once the VAD has seen them.

Each frame costs every processor it crosses a fixed overhead (a queue hop, event handlers,
observers) whatever its size. After the VAD, nothing needs the audio 20 ms at a time: our
Deepgram STT sends it in 100 ms messages anyway, and the turn analyzer only buffers it until the
VAD's stop. So the frames that cross the STT, the user aggregator and what follows are five times
fewer. Every other frame (the VAD's start and stop, push-to-talk, an interruption, the end)
first flushes the audio held before it, so the order of audio and events downstream is what it
was, and the user's last words reach the STT before its `Finalize`. The one exception is the
VAD's "still speaking" heartbeat: where it falls among the audio means nothing to anyone, and
flushing for it every 0.2 s would cut the joined frames short and leave the STT a stub to send
late.
"""

from __future__ import annotations

from pipecat.frames.frames import Frame, InputAudioRawFrame, UserSpeakingFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from processors.deepgram_stt import BATCH_SECS

MAX_SECS = BATCH_SECS  # one joined frame is one message to Deepgram


class InputAudioCoalescer(FrameProcessor):
    """Pushes input audio on in frames of up to `max_secs` (or one longer frame as it came); any
    other frame flushes it first.

    No timer: audio held here waits at most until the next frame of any kind, and what acts on
    the caller's audio downstream (the VAD's stop, the turn analyzer's silence count, the STT's
    batches) only moves on when more frames come. Audio of another rate, channel count or source
    is never joined to what is held.

    Example::

        Pipeline([transport.input(), VADProcessor(...), InputAudioCoalescer(), stt, user_aggregator, ...])
    """

    def __init__(self, *, max_secs: float = MAX_SECS, **kwargs):
        super().__init__(**{"enable_direct_mode": True, **kwargs})
        self._max_secs = max_secs
        self._held = bytearray()
        self._first: InputAudioRawFrame | None = None  # the oldest frame held: its format and source
        self._max_bytes = 0

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if type(frame) is InputAudioRawFrame and direction == FrameDirection.DOWNSTREAM:
            await self._hold(frame)
            return
        if direction == FrameDirection.DOWNSTREAM and not isinstance(frame, UserSpeakingFrame):
            await self._flush()
        await self.push_frame(frame, direction)

    async def _hold(self, frame: InputAudioRawFrame) -> None:
        first = self._first
        if first is not None and (
            frame.sample_rate != first.sample_rate
            or frame.num_channels != first.num_channels
            or frame.transport_source != first.transport_source
            or len(self._held) + len(frame.audio) > self._max_bytes
        ):
            await self._flush()
            first = None
        if first is None:
            self._first = frame
            self._max_bytes = int(self._max_secs * frame.sample_rate) * frame.num_channels * 2
        self._held.extend(frame.audio)
        if len(self._held) >= self._max_bytes:
            await self._flush()

    async def _flush(self) -> None:
        first = self._first
        if first is None:
            return
        self._first = None
        if len(self._held) == len(first.audio):
            joined = first  # a single frame goes on as it came
        else:
            joined = InputAudioRawFrame(
                audio=bytes(self._held), sample_rate=first.sample_rate, num_channels=first.num_channels
            )
            joined.transport_source = first.transport_source
            joined.pts = first.pts
        self._held.clear()
        await self.push_frame(joined)
