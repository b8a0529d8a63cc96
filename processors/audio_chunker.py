"""Splits long input audio (a whole recording in one message) into 20 ms frames."""

from __future__ import annotations

from pipecat.frames.frames import Frame, InputAudioRawFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

CHUNK_SECS = 0.02


class InputAudioChunker(FrameProcessor):
    """Re-frames `InputAudioRawFrame`s longer than 20 ms into 20 ms frames, in order.

    The VAD reports only its final state per frame it analyses, so a 5 s recording delivered
    as one frame would hide the start and end of speech inside it. Split like this, a recording
    sent in one message is processed exactly like the same audio streamed from a microphone.

    Example::

        Pipeline([transport.input(), InputAudioChunker(), VADProcessor(vad_analyzer=vad), ...])
    """

    def __init__(self, **kwargs):
        super().__init__(**{"enable_direct_mode": True, **kwargs})  # no queue hop per frame

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if not isinstance(frame, InputAudioRawFrame):
            await self.push_frame(frame, direction)
            return
        step = int(frame.sample_rate * CHUNK_SECS) * 2 * frame.num_channels
        if len(frame.audio) <= step:
            await self.push_frame(frame, direction)
            return
        for start in range(0, len(frame.audio), step):
            chunk = InputAudioRawFrame(
                audio=frame.audio[start : start + step],
                sample_rate=frame.sample_rate,
                num_channels=frame.num_channels,
            )
            await self.push_frame(chunk, direction)
