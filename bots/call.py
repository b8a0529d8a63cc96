"""`voicebot call URL --audio FILE [--ptt]`: a reference client for the simple protocol.

It plays the role of an app that records the user and sends the recording (any format) to
`/ws/simple`, prints every event the server sends, and saves the bot's voice to a WAV file.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

T = TypeVar("T")


async def poll_until(check: Callable[[], T], timeout: float, what: str = "condition") -> T:
    """Poll `check()` every 50 ms until it returns something truthy; TimeoutError after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        await asyncio.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class SimpleClient:
    """A `/ws/simple` connection: send audio and commands, collect events and bot audio."""

    url: str
    events: list[tuple[float, dict]] = field(default_factory=list)
    audio: list[tuple[float, bytes]] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""
    on_event: object = None  # optional callable(event) for live printing
    _ws: ClientConnection | None = None
    _reader: asyncio.Task | None = None

    async def __aenter__(self) -> SimpleClient:
        self._ws = await connect(self.url, max_size=None, compression=None)
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def send_json(self, message: dict) -> None:
        await self._ws.send(json.dumps(message))

    async def send_text_frame(self, text: str) -> None:
        await self._ws.send(text)

    async def send_bytes(self, data: bytes) -> None:
        await self._ws.send(data)

    async def stream_pcm(
        self, pcm16: bytes, sample_rate: int = 16000, frame_secs: float = 0.02, speed: float = 1.0
    ) -> None:
        """Send PCM in `frame_secs` frames on an absolute clock, in real time (or `speed` times faster)."""
        step = int(sample_rate * frame_secs) * 2
        next_at = time.monotonic()
        for start in range(0, len(pcm16), step):
            await self._ws.send(pcm16[start : start + step])
            next_at += frame_secs / speed
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def wait_with_open_microphone(self, predicate, timeout: float, what: str = "condition"):
        """Wait for `predicate` while streaming silence in real time, as a live microphone does."""
        microphone = asyncio.create_task(self.stream_pcm(bytes(int(16000 * 2 * timeout))))
        try:
            return await self.wait_for(predicate, timeout, what)
        finally:
            microphone.cancel()
            await asyncio.gather(microphone, return_exceptions=True)

    async def _read(self) -> None:
        try:
            async for message in self._ws:
                now = time.monotonic()
                if isinstance(message, bytes):
                    self.audio.append((now, message))
                    continue
                event = json.loads(message)
                self.events.append((now, event))
                if callable(self.on_event):
                    self.on_event(event)
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self._ws.close_code
            self.close_reason = self._ws.close_reason or ""

    def of_type(self, kind: str) -> list[dict]:
        return [event for _, event in self.events if event.get("type") == kind]

    def times(self, kind: str) -> list[float]:
        return [at for at, event in self.events if event.get("type") == kind]

    def bot_audio(self) -> bytes:
        return b"".join(chunk for _, chunk in self.audio)

    async def wait_for(self, predicate, timeout: float, what: str = "condition"):
        return await poll_until(lambda: predicate(self), timeout, what)

    async def wait_closed(self, timeout: float) -> None:
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


def save_wav(path: Path, pcm16: bytes, sample_rate: int) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm16)


async def call(url: str, audio: Path, *, ptt: bool, out: Path, reply_timeout: float) -> int:
    """Send one recording, wait for the bot's reply to finish, hang up, save the bot audio."""
    recording = audio.read_bytes()

    def show(event: dict) -> None:
        print(json.dumps(event), flush=True)

    async with SimpleClient(url, on_event=show) as client:
        ready = await client.wait_for(lambda c: c.of_type("ready"), 10, "ready")
        if ptt:
            await client.send_json({"type": "ptt", "active": True})
        await client.send_bytes(recording)
        if ptt:
            await client.send_json({"type": "ptt", "active": False})
        try:
            await client.wait_for(
                lambda c: (
                    c.of_type("end")
                    or (
                        c.of_type("bot_text")
                        and c.times("bot_stopped_speaking")[-1:] > c.times("bot_text")[-1:]
                    )
                ),
                reply_timeout,
                "the reply",
            )
        except TimeoutError as e:
            print(f"voicebot call: {e}", file=sys.stderr)
        if not client.of_type("end"):
            await client.send_json({"type": "hangup"})
            await client.wait_closed(timeout=15)
    save_wav(out, client.bot_audio(), ready[0]["output_sample_rate"])
    print(f"saved {len(client.bot_audio()) / 2 / ready[0]['output_sample_rate']:.1f}s of bot audio to {out}")
    return 0 if client.of_type("bot_text") else 1
