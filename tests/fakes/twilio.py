"""Twilio at the network edge: the REST API that hangs calls up, and a caller on Media Streams.

The caller does what Twilio does: POSTs the voice webhook (signed), follows the TwiML to the
stream URL (signed), sends `connected` and `start`, streams μ-law 8 kHz in 20 ms `media`
events at real-time pace, plays received audio in real time `PLAYOUT_DELAY_SECS` behind its
arrival (a phone line's jitter buffer and network), echoes each `mark` only when the audio
before it has played (or at once on `clear`, which drops unplayed audio), and hangs up with
`stop`. The delay is fixed so that a server that hangs up without waiting for the mark cuts
the goodbye off every time, not only when it loses a race.
Message shapes: anchors.md §5 (Twilio's Media Streams reference).
"""

from __future__ import annotations

import asyncio
import audioop
import base64
import contextlib  # Python 3.11 stdlib; exact G.711 μ-law, as Twilio uses
import json
import time
import urllib.parse
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import aiohttp
import numpy as np
import soxr
from aiohttp import web
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bots.call import poll_until
from tests.fakes.background_loop import BackgroundServer

FRAME_SECS = 0.02
ULAW_FRAME_BYTES = 160  # 20 ms at 8 kHz, one byte per sample
PLAYOUT_DELAY_SECS = 0.5  # received audio starts playing this much later


@dataclass
class HangUp:
    account_sid: str
    call_sid: str
    form: dict
    authorization: str
    at: float


class FakeTwilioAPI(BackgroundServer):
    """`POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`: records each hang-up."""

    def __init__(self) -> None:
        super().__init__()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.hang_ups: list[HangUp] = []
        self.finished_calls: set[str] = set()  # answer 404 / 20404 for these

    async def serve(self):
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{account}/Calls/{call}.json", self._update_call)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port, shutdown_timeout=0.5).start()
        return runner.cleanup

    async def _update_call(self, request: web.Request) -> web.Response:
        account, call = request.match_info["account"], request.match_info["call"]
        form = dict(await request.post())
        self.hang_ups.append(
            HangUp(account, call, form, request.headers.get("Authorization", ""), time.monotonic())
        )
        if call in self.finished_calls:
            error = {
                "code": 20404,
                "message": f"The requested resource {request.path} was not found",
                "status": 404,
            }
            return web.json_response(error, status=404)
        self.finished_calls.add(call)
        return web.json_response({"sid": call, "account_sid": account, "status": "completed"})


def pcm16k_to_ulaw8k(pcm16: bytes) -> bytes:
    samples = np.frombuffer(pcm16, dtype=np.int16)
    return audioop.lin2ulaw(soxr.resample(samples, 16000, 8000).astype(np.int16).tobytes(), 2)


@dataclass
class TwilioCaller:
    """A phone call placed through `/twilio/voice` and carried on `/twilio/ws`."""

    server_url: str  # http://127.0.0.1:PORT
    auth_token: str
    call_sid: str = "CA00000000000000000000000000000001"
    account_sid: str = "AC00000000000000000000000000000001"
    stream_sid: str = "MZ00000000000000000000000000000001"
    from_number: str = "+15550001111"
    to_number: str = "+15550002222"
    events: list[tuple[float, dict]] = field(default_factory=list)
    echoed_marks: list[tuple[float, str]] = field(default_factory=list)
    played_ulaw: bytearray = field(default_factory=bytearray)
    close_code: int | None = None
    close_reason: str = ""
    stream_url: str = ""
    parameters: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._validator = RequestValidator(self.auth_token)
        self._ws: ClientConnection | None = None
        self._tasks: list[asyncio.Task] = []
        self._speech: asyncio.Queue[bytes] = asyncio.Queue()
        self._playing_until = 0.0  # when the audio received so far will have played
        self._pending_marks: list[tuple[float, str]] = []
        self._sequence = 0
        self.last_speech_sent_at = 0.0

    # --- placing the call -----------------------------------------------------------------

    async def dial(self) -> str:
        """POST the voice webhook as Twilio would; returns the TwiML."""
        form = {"CallSid": self.call_sid, "AccountSid": self.account_sid, "From": self.from_number,
                "To": self.to_number, "Direction": "inbound", "CallStatus": "ringing"}  # fmt: skip
        url = f"{self.server_url}/twilio/voice"
        headers = {"X-Twilio-Signature": self._validator.compute_signature(url, form)}
        async with aiohttp.ClientSession() as http, http.post(url, data=form, headers=headers) as response:
            assert response.status == 200, await response.text()
            twiml = await response.text()
        stream = ET.fromstring(twiml).find("./Connect/Stream")
        self.stream_url = stream.get("url")
        self.parameters = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
        return twiml

    async def connect(self, signature: str | None = None) -> None:
        """Open the media stream (signed over the stream URL, no parameters) and start it."""
        signature = (
            signature if signature is not None else self._validator.compute_signature(self.stream_url, {})
        )
        self._ws = await connect(self.stream_url, additional_headers={"X-Twilio-Signature": signature})
        await self._send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await self._send({
            "event": "start", "sequenceNumber": self._next_sequence(), "streamSid": self.stream_sid,
            "start": {"accountSid": self.account_sid, "streamSid": self.stream_sid, "callSid": self.call_sid,
                      "tracks": ["inbound"], "customParameters": self.parameters,
                      "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}},
        })  # fmt: skip
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._phone_line())]

    async def __aenter__(self) -> TwilioCaller:
        await self.dial()
        await self.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def _next_sequence(self) -> str:
        self._sequence += 1
        return str(self._sequence)

    async def _send(self, message: dict) -> None:
        await self._ws.send(json.dumps(message))

    async def send_raw(self, data: str | bytes) -> None:
        """Something that is not a Twilio event (for negative tests)."""
        await self._ws.send(data)

    # --- the caller's side of the line ----------------------------------------------------

    def say(self, pcm16: bytes) -> None:
        """Speak (16 kHz PCM); the line carries silence before and after, like a real call."""
        self._speech.put_nowait(pcm16k_to_ulaw8k(pcm16))

    async def _phone_line(self) -> None:
        silence = b"\xff" * ULAW_FRAME_BYTES  # μ-law silence
        pending = b""
        next_at = time.monotonic()
        chunk_number = 0
        try:
            while True:
                if not pending and not self._speech.empty():
                    pending = self._speech.get_nowait()
                frame, pending = (
                    (pending[:ULAW_FRAME_BYTES], pending[ULAW_FRAME_BYTES:]) if pending else (silence, b"")
                )
                chunk_number += 1
                media = {
                    "track": "inbound",
                    "chunk": str(chunk_number),
                    "timestamp": str(chunk_number * 20),
                    "payload": base64.b64encode(frame.ljust(ULAW_FRAME_BYTES, b"\xff")).decode(),
                }
                sequence = self._next_sequence()
                await self._send(
                    {
                        "event": "media",
                        "sequenceNumber": sequence,
                        "streamSid": self.stream_sid,
                        "media": media,
                    }
                )
                if frame is not silence and not pending:
                    self.last_speech_sent_at = time.monotonic()
                next_at += FRAME_SECS
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        except ConnectionClosed:
            return

    async def _read(self) -> None:
        try:
            async for raw in self._ws:
                now = time.monotonic()
                message = json.loads(raw)
                self.events.append((now, message))
                event = message.get("event")
                if event == "media":
                    audio = base64.b64decode(message["media"]["payload"])
                    self.played_ulaw.extend(audio)
                    starts = max(self._playing_until, now + PLAYOUT_DELAY_SECS)
                    self._playing_until = starts + len(audio) / 8000
                elif event == "mark":
                    self._pending_marks.append((self._playing_until, message["mark"]["name"]))
                    asyncio.get_running_loop().call_later(
                        max(0.0, self._playing_until - now), self._echo_due_marks
                    )
                elif event == "clear":
                    self._playing_until = now  # unplayed audio is dropped...
                    self._echo_due_marks()  # ...and its marks come back at once
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self._ws.close_code
            self.close_reason = self._ws.close_reason or ""

    def _echo_due_marks(self) -> None:
        now = time.monotonic()
        due = [name for at, name in self._pending_marks if at <= now + 0.001]
        self._pending_marks = [(at, name) for at, name in self._pending_marks if at > now + 0.001]
        for name in due:
            self.echoed_marks.append((now, name))
            message = {"event": "mark", "sequenceNumber": self._next_sequence(), "streamSid": self.stream_sid,
                       "mark": {"name": name}}  # fmt: skip
            self._tasks.append(asyncio.ensure_future(self._send_quietly(message)))

    async def _send_quietly(self, message: dict) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self._send(message)

    # --- observing and ending ---------------------------------------------------------------

    def of_event(self, name: str) -> list[dict]:
        return [message for _, message in self.events if message.get("event") == name]

    def times(self, name: str) -> list[float]:
        return [at for at, message in self.events if message.get("event") == name]

    async def wait_for(self, predicate, timeout: float, what: str):
        return await poll_until(lambda: predicate(self), timeout, what)

    async def wait_closed(self, timeout: float) -> None:
        await asyncio.wait_for(asyncio.shield(self._tasks[0]), timeout)

    async def hang_up(self) -> None:
        """The caller hangs up: Twilio sends `stop` and closes the stream."""
        stop = {"accountSid": self.account_sid, "callSid": self.call_sid}
        await self._send(
            {
                "event": "stop",
                "sequenceNumber": self._next_sequence(),
                "streamSid": self.stream_sid,
                "stop": stop,
            }
        )
        await self.close()

    async def close(self) -> None:
        for task in self._tasks[1:]:
            task.cancel()
        if self._ws is not None:
            await self._ws.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def signed_form_post(url: str, form: dict, auth_token: str) -> tuple[bytes, dict]:
    """A webhook request body and headers signed with `auth_token` (for negative tests)."""
    signature = RequestValidator(auth_token).compute_signature(url, form)
    return urllib.parse.urlencode(form).encode(), {
        "X-Twilio-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded",
    }
