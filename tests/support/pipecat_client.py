"""A browser-like WebSocket client speaking Pipecat's protobuf frames and RTVI, as the JS SDK does."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import pipecat.frames.protobufs.frames_pb2 as frame_protos
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bots.call import poll_until

FRAME_SECS = 0.02


@dataclass
class Received:
    """Everything the server sent, with arrival times (time.monotonic())."""

    audio: list[tuple[float, bytes]] = field(default_factory=list)
    messages: list[tuple[float, dict]] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""

    def audio_bytes_after(self, moment: float) -> int:
        return sum(len(chunk) for at, chunk in self.audio if at >= moment)

    def first_audio_after(self, moment: float) -> float | None:
        return next((at for at, _ in self.audio if at >= moment), None)

    def rtvi(self, message_type: str) -> list[dict]:
        return [m for _, m in self.messages if m.get("type") == message_type]

    def times(self, message_type: str) -> list[float]:
        return [at for at, m in self.messages if m.get("type") == message_type]

    def server_messages(self) -> list[dict]:
        return [m["data"] for m in self.rtvi("server-message")]

    def bot_texts(self) -> list[str]:
        """Sentences the bot finished speaking (RTVI v2 `bot-output` with status `completed`)."""
        return [
            m["data"]["text"]
            for m in self.rtvi("bot-output")
            if m["data"].get("spoken_status") == "completed"
        ]

    def audio_between(self, start: float, end: float = float("inf")) -> bytes:
        return b"".join(chunk for at, chunk in self.audio if start <= at < end)


class PipecatWebsocketClient:
    """Connects to `/ws`, announces itself like `@pipecat-ai/client-js`, streams mic audio."""

    def __init__(self, url: str, sample_rate: int = 16000, *, stream_silence: bool = True, **connect_options):
        """`stream_silence=False` behaves like an app that sends a recording and then nothing;
        `connect_options` go to `websockets.connect` (e.g. `additional_headers`, or `local_addr`
        to call from another loopback address)."""
        self.url = url
        self.connect_options = connect_options
        self.stream_silence = stream_silence
        self.sample_rate = sample_rate
        self.received = Received()
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task | None = None
        self._mic: asyncio.Task | None = None
        self._mic_queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.last_speech_sent_at = 0.0

    async def __aenter__(self) -> PipecatWebsocketClient:
        self._ws = await connect(self.url, max_size=None, compression=None, **self.connect_options)
        self._reader = asyncio.create_task(self._read())
        await self.send_rtvi("client-ready", {"version": "2.2.0", "about": {"library": "voicebot-tests"}})
        self._mic = asyncio.create_task(self._microphone())
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def send_rtvi(self, message_type: str, data: dict) -> None:
        message = {"label": "rtvi-ai", "type": message_type, "id": str(time.monotonic_ns()), "data": data}
        frame = frame_protos.Frame()
        frame.message.data = json.dumps(message)
        await self._ws.send(frame.SerializeToString())

    def say(self, pcm16: bytes) -> None:
        """Queue speech; the microphone sends it in real time, then goes back to silence."""
        self._mic_queue.put_nowait(pcm16)

    async def _microphone(self) -> None:
        """Send a 20 ms frame every 20 ms on an absolute clock, silence when nothing is queued."""
        frame_bytes = int(self.sample_rate * FRAME_SECS) * 2
        silence = bytes(frame_bytes)
        pending = b""
        next_at = time.monotonic()
        try:
            while True:
                if not pending and not self._mic_queue.empty():
                    pending = self._mic_queue.get_nowait()
                if not pending and not self.stream_silence:
                    pending = await self._mic_queue.get()
                    next_at = time.monotonic()
                chunk, pending = (pending[:frame_bytes], pending[frame_bytes:]) if pending else (silence, b"")
                chunk = chunk.ljust(frame_bytes, b"\0")
                frame = frame_protos.Frame()
                frame.audio.audio = chunk
                frame.audio.sample_rate = self.sample_rate
                frame.audio.num_channels = 1
                await self._ws.send(frame.SerializeToString())
                if chunk is not silence and not pending:
                    self.last_speech_sent_at = time.monotonic()
                next_at += FRAME_SECS
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        except ConnectionClosed:
            return

    async def _read(self) -> None:
        try:
            async for data in self._ws:
                now = time.monotonic()
                frame = frame_protos.Frame()
                frame.ParseFromString(data)
                kind = frame.WhichOneof("frame")
                if kind == "audio":
                    self.received.audio.append((now, frame.audio.audio))
                elif kind == "message":
                    self.received.messages.append((now, json.loads(frame.message.data)))
        except ConnectionClosed:
            pass
        finally:
            if self._ws.close_code is not None:
                self.received.close_code = self._ws.close_code
                self.received.close_reason = self._ws.close_reason or ""

    async def wait_for(self, predicate, timeout: float, what: str = "condition"):
        """Poll `predicate(received)` until it returns something truthy."""
        return await poll_until(lambda: predicate(self.received), timeout, what)

    async def wait_closed(self, timeout: float) -> None:
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)

    async def close(self) -> None:
        for task in (self._mic,):
            if task and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


def llm_text(client: PipecatWebsocketClient) -> str:
    """Everything the LLM has said to this client (RTVI `bot-llm-text`), joined."""
    return "".join(m["data"]["text"] for m in client.received.rtvi("bot-llm-text"))
