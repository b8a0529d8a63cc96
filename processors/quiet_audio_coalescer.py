"""Fewer frame hops for the caller's silence: near-silent 20 ms input frames travel in 100 ms chunks.

Every input audio frame costs the same trip through the VAD, the STT, the user aggregator and
every observer, whatever it holds, and a caller is silent most of a call (listening to the bot,
thinking). While the VAD says nobody is speaking, a near-silent frame cannot complete the
VAD's decision that speech started (that needs 0.2 s of windows Silero scores as speech *and*
loud enough for Pipecat's volume gate), so holding it back a little delays no decision: the
first frame that could matter goes out at once, behind the held ones, in order. While the user
speaks, nothing is held: the end of their speech, which starts the reply, is decided on exactly
the frames and at exactly the moment it would be without this processor.
"""

from __future__ import annotations

import numpy as np
from pipecat.frames.frames import (
    Frame,
    InputAudioRawFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

# Near-silent: no sample louder than -50 dBFS. Pipecat's volume gate needs the loudness of the
# last 400 ms at -50 LUFS or more before any window counts as speech.
QUIET_PEAK = 100
MAX_HELD_SECS = 0.1


class QuietAudioCoalescer(FrameProcessor):
    """Joins near-silent input frames into chunks of up to `max_held_secs` while nobody speaks.

    Place it right before the VAD. It learns whether the user is speaking from the VAD's own
    frames, which the VAD sends upstream as well as downstream.

    Example::

        Pipeline([transport.input(), QuietAudioCoalescer(), VADProcessor(...), stt, ...])
    """

    def __init__(self, *, max_held_secs: float = MAX_HELD_SECS, quiet_peak: int = QUIET_PEAK, **kwargs):
        super().__init__(**{"enable_direct_mode": True, **kwargs})
        self._max_held_secs = max_held_secs
        self._quiet_peak = quiet_peak
        self._speaking = False
        self._held: list[InputAudioRawFrame] = []
        self._held_bytes = 0

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, VADUserStartedSpeakingFrame):
            self._speaking = True
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            self._speaking = False
        if direction != FrameDirection.DOWNSTREAM:
            await self.push_frame(frame, direction)
            return
        if isinstance(frame, InputAudioRawFrame) and not self._speaking and self._is_quiet(frame):
            self._held.append(frame)
            self._held_bytes += len(frame.audio)
            if self._held_bytes >= self._max_bytes(frame):
                await self._release()
            return
        if isinstance(frame, InputAudioRawFrame) and self._held:
            self._held.append(frame)
            await self._release()
            return
        await self._release()  # whatever comes next (a system frame too) stays behind the audio
        await self.push_frame(frame, direction)

    def _is_quiet(self, frame: InputAudioRawFrame) -> bool:
        samples = np.frombuffer(frame.audio, dtype=np.int16)
        return samples.size == 0 or int(np.abs(samples, dtype=np.int32).max()) <= self._quiet_peak

    def _max_bytes(self, frame: InputAudioRawFrame) -> int:
        return int(self._max_held_secs * frame.sample_rate) * frame.num_channels * 2

    async def _release(self) -> None:
        """Send what is held as one frame (the last one, carrying all the audio)."""
        if not self._held:
            return
        held, self._held, self._held_bytes = self._held, [], 0
        chunk = held[-1]
        if len(held) > 1:
            chunk.audio = b"".join(frame.audio for frame in held)
            chunk.num_frames = len(chunk.audio) // (chunk.num_channels * 2)
        await self.push_frame(chunk, FrameDirection.DOWNSTREAM)
