"""The WebSocket input's audio task keeps Pipecat's behaviour: filter, skip emptied frames, pass through."""

from __future__ import annotations

import asyncio
import contextlib
from types import SimpleNamespace

from pipecat.audio.filters.base_audio_filter import BaseAudioFilter
from pipecat.frames.frames import FilterControlFrame, InputAudioRawFrame
from pipecat.transports.base_transport import TransportParams

from transports.websocket_audio_input import WebsocketAudioInput


class HalvingFilter(BaseAudioFilter):
    """Keeps the first half of each chunk; a chunk of two bytes or less comes out empty."""

    async def start(self, sample_rate: int):
        pass

    async def stop(self):
        pass

    async def process_frame(self, frame: FilterControlFrame):
        pass

    async def filter(self, audio: bytes) -> bytes:
        return audio[: len(audio) // 2] if len(audio) > 2 else b""


async def run_audio_task(params: TransportParams, chunks: list[bytes]) -> list[bytes]:
    """Run the real audio task over a queue of frames; what it pushes, in order."""
    pushed: list[bytes] = []
    queue: asyncio.Queue = asyncio.Queue()

    async def push_frame(frame):
        pushed.append(frame.audio)

    transport_input = SimpleNamespace(_audio_in_queue=queue, _params=params, push_frame=push_frame)
    for chunk in chunks:
        queue.put_nowait(InputAudioRawFrame(audio=chunk, sample_rate=16000, num_channels=1))
    task = asyncio.create_task(WebsocketAudioInput._audio_task_handler(transport_input))
    await asyncio.wait_for(queue.join(), 5)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return pushed


async def test_the_audio_filter_runs_on_every_frame_and_emptied_frames_are_not_pushed():
    params = TransportParams(audio_in_enabled=True, audio_in_filter=HalvingFilter())
    pushed = await run_audio_task(params, [b"abcd", b"xy", b"123456"])
    assert pushed == [b"ab", b"123"]


async def test_without_passthrough_the_audio_stops_at_the_transport():
    params = TransportParams(audio_in_enabled=True, audio_in_passthrough=False)
    assert await run_audio_task(params, [b"abcd"]) == []
