"""Pipecat's WebSocket input, with an audio task that waits for the next frame without a timer.

Pipecat 1.14's `BaseInputTransport._audio_task_handler` takes each frame from its queue with
`asyncio.wait_for(queue.get(), timeout=0.5)` and does nothing when the wait times out. On Python
3.11 Pipecat swaps `asyncio.wait_for` for `wait_for2.wait_for`, which starts a task and a timer
for every wait: 50 of each per second of every call's audio, for a timeout with no effect.
"""

from __future__ import annotations

from pipecat.transports.websocket.fastapi import FastAPIWebsocketInputTransport


class WebsocketAudioInput(FastAPIWebsocketInputTransport):
    """`FastAPIWebsocketInputTransport` whose audio task is Pipecat's without the no-op timeout.

    The loop below is Pipecat's own (tests/test_pipecat_contract.py fingerprints it): the audio
    filter, empty frames skipped, pass-through, `task_done` per frame.
    """

    async def _audio_task_handler(self):
        queue = self._audio_in_queue
        while True:
            frame = await queue.get()
            if self._params.audio_in_filter:
                frame.audio = await self._params.audio_in_filter.filter(frame.audio)
            if frame.audio and self._params.audio_in_passthrough:
                await self.push_frame(frame)
            queue.task_done()
