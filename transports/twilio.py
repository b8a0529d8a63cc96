"""Phone calls over Twilio Media Streams: TwiML, the stream handshake, marks and the hang-up.

Pipecat's `TwilioFrameSerializer` converts audio (8 kHz μ-law ↔ PCM) and interruptions
(`clear`). What it does not do, we add here: the goodbye is heard in full (a `mark` after it,
and the close waits for Twilio to echo that mark, since Twilio plays audio after we send it),
the REST hang-up comes after that and never when the caller already hung up, and requests are
checked against Twilio's signature.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from fastapi import WebSocket
from loguru import logger
from pipecat.frames.frames import Frame, OutputTransportMessageFrame, OutputTransportMessageUrgentFrame
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.transports.websocket.fastapi import FastAPIWebsocketTransport
from starlette.websockets import WebSocketDisconnect
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Connect, VoiceResponse

from pipeline.settings import Settings
from processors.frames import ClientHangupFrame, SessionEndedMessageFrame
from transports.websocket_session import websocket_transport

TWILIO_SAMPLE_RATE = 8000
STREAM_PATH = "/twilio/ws"
END_MARK = "voicebot-session-end"
MARK_WAIT_SECS = 20.0  # the longest a goodbye may take to play out before we hang up anyway
HANG_UP_TIMEOUT_SECS = 10.0


class TwilioProtocolError(ValueError):
    """The media stream did not open with a valid `connected` + `start`."""


@dataclass
class TwilioCall:
    """One call's identity and how its end is going."""

    stream_sid: str
    call_sid: str
    account_sid: str
    parameters: dict = field(default_factory=dict)
    caller_hung_up: bool = False
    end_mark_sent: bool = False
    end_mark_played: asyncio.Event = field(default_factory=asyncio.Event)


def stream_url(settings: Settings, host: str, scheme: str) -> str:
    """The media WebSocket URL for TwiML: from VOICEBOT_PUBLIC_URL, else from the request."""
    if settings.public_url:
        parts = urlsplit(settings.public_url)
        ws_scheme = "wss" if parts.scheme == "https" else "ws"
        return urlunsplit((ws_scheme, parts.netloc, parts.path.rstrip("/") + STREAM_PATH, "", ""))
    return f"{'wss' if scheme == 'https' else 'ws'}://{host}{STREAM_PATH}"


def webhook_url(settings: Settings, request_url: str) -> str:
    """The URL Twilio signed: the public URL behind a proxy, else the URL as requested."""
    if not settings.public_url:
        return request_url
    path = urlsplit(request_url).path
    return settings.public_url.rstrip("/") + path


def twiml_connect(url: str, *, call_sid: str, from_number: str, to_number: str) -> str:
    """`<Connect><Stream>` with the caller's details as parameters, and nothing after it.

    A `<Pause>` after `<Connect>` would keep a dead call open for its length (Pipecat PR #5135).
    """
    response = VoiceResponse()
    connect = Connect()
    stream = connect.stream(url=url)
    stream.parameter(name="from", value=from_number)
    stream.parameter(name="to", value=to_number)
    stream.parameter(name="callSid", value=call_sid)
    response.append(connect)
    return str(response)


def signature_is_valid(settings: Settings, url: str, params: dict, signature: str | None) -> bool:
    """With TWILIO_AUTH_TOKEN set, a request must carry Twilio's signature over `url` + `params`."""
    if settings.twilio_auth_token is None:
        return True
    validator = RequestValidator(settings.twilio_auth_token.get_secret_value())
    return bool(signature) and validator.validate(url, params, signature)


async def read_handshake(websocket: WebSocket, *, timeout: float = 10.0) -> TwilioCall:
    """Read `connected` (optional) and `start`; anything else first is a protocol error."""

    async def first_start() -> TwilioCall:
        while True:
            message = json.loads(await websocket.receive_text())
            event = message.get("event") if isinstance(message, dict) else None
            if event == "connected":
                continue
            if event != "start":
                raise TwilioProtocolError(f"expected a start event, got {event!r}")
            start = message.get("start") or {}
            stream_sid = start.get("streamSid") or message.get("streamSid")
            if not stream_sid or not start.get("callSid"):
                raise TwilioProtocolError("the start event has no streamSid or callSid")
            return TwilioCall(
                stream_sid=stream_sid,
                call_sid=start["callSid"],
                account_sid=start.get("accountSid", ""),
                parameters=start.get("customParameters") or {},
            )

    try:
        return await asyncio.wait_for(first_start(), timeout)
    except (TimeoutError, json.JSONDecodeError, KeyError, TypeError, WebSocketDisconnect) as e:
        raise TwilioProtocolError(f"bad media stream handshake: {e or type(e).__name__}") from e


class CallSerializer(TwilioFrameSerializer):
    """Pipecat's Twilio serializer, told how this call ends.

    - The session-ended notice becomes a `mark` right after the goodbye audio.
    - Twilio's echo of that mark means the caller has heard the goodbye.
    - `stop` (the caller hung up) ends the session at once; no REST hang-up follows.
    - Our other JSON messages (metrics, RTVI) are not Twilio events and are not sent.
    """

    def __init__(self, call: TwilioCall):
        super().__init__(
            call.stream_sid,
            call_sid=call.call_sid,
            params=TwilioFrameSerializer.InputParams(auto_hang_up=False),
        )
        self._call = call

    async def serialize(self, frame: Frame) -> str | bytes | None:
        if isinstance(frame, SessionEndedMessageFrame):
            if self._call.caller_hung_up:
                return None
            self._call.end_mark_sent = True
            return json.dumps(
                {"event": "mark", "streamSid": self._call.stream_sid, "mark": {"name": END_MARK}}
            )
        if isinstance(frame, OutputTransportMessageFrame | OutputTransportMessageUrgentFrame):
            return None
        return await super().serialize(frame)

    async def deserialize(self, data: str | bytes) -> Frame | None:
        try:
            message = json.loads(data)
        except (json.JSONDecodeError, TypeError):
            return None
        event = message.get("event") if isinstance(message, dict) else None
        if event == "mark":
            note_mark(self._call, message)
            return None
        if event == "stop":
            self._call.caller_hung_up = True
            return ClientHangupFrame()
        return await super().deserialize(data)


def note_mark(call: TwilioCall, message: dict) -> None:
    if (message.get("mark") or {}).get("name") == END_MARK:
        call.end_mark_played.set()


class CallCloser:
    """Finishes a call after the pipeline: wait for the goodbye to play, hang up, then the
    transport closes the stream."""

    def __init__(self, call: TwilioCall, settings: Settings):
        self._call = call
        self._settings = settings

    async def before_close(self, websocket: WebSocket) -> None:
        await self._wait_for_goodbye(websocket)
        await self._hang_up()

    async def _wait_for_goodbye(self, websocket: WebSocket) -> None:
        """Wait (bounded) until Twilio echoes the end mark: the goodbye has been heard."""
        call = self._call
        if call.caller_hung_up or not call.end_mark_sent or call.end_mark_played.is_set():
            return
        try:
            await asyncio.wait_for(self._read_until_mark(websocket), MARK_WAIT_SECS)
        except TimeoutError:
            logger.warning(
                f"Call {call.call_sid}: no echo of the end mark in {MARK_WAIT_SECS:g}s; hanging up"
            )
        except (WebSocketDisconnect, RuntimeError):
            call.caller_hung_up = True

    async def _read_until_mark(self, websocket: WebSocket) -> None:
        # The transport's reader has stopped by now, so we read the socket ourselves.
        while not self._call.end_mark_played.is_set():
            message = json.loads(await websocket.receive_text())
            if message.get("event") == "stop":
                self._call.caller_hung_up = True
                return
            if message.get("event") == "mark":
                note_mark(self._call, message)

    async def _hang_up(self) -> None:
        """Hang up through the REST API, unless the caller already did."""
        call = self._call
        token = self._settings.twilio_auth_token
        account = self._settings.twilio_account_sid or call.account_sid
        if call.caller_hung_up:
            return
        if token is None or not account:
            logger.debug(f"Call {call.call_sid}: no Twilio credentials; the closed stream ends the call")
            return
        base = self._settings.twilio_api_base_url.rstrip("/")
        url = f"{base}/2010-04-01/Accounts/{account}/Calls/{call.call_sid}.json"
        try:
            async with (
                aiohttp.ClientSession(auth=aiohttp.BasicAuth(account, token.get_secret_value())) as http,
                http.post(
                    url,
                    data={"Status": "completed"},
                    timeout=aiohttp.ClientTimeout(total=HANG_UP_TIMEOUT_SECS),
                ) as response,
            ):
                if response.status == 404:
                    logger.debug(f"Call {call.call_sid} was already over")
                elif response.status >= 300:
                    logger.warning(f"Call {call.call_sid}: hang-up answered HTTP {response.status}")
                else:
                    logger.info(f"Call {call.call_sid} hung up")
        except (aiohttp.ClientError, TimeoutError) as e:
            logger.warning(f"Call {call.call_sid}: hang-up request failed: {e}")


def twilio_transport(
    websocket: WebSocket, call: TwilioCall, settings: Settings, close_reason
) -> FastAPIWebsocketTransport:
    """The call's transport: 8 kHz μ-law both ways, and the call's own ending."""
    closer = CallCloser(call, settings)
    return websocket_transport(
        websocket,
        CallSerializer(call),
        output_sample_rate=TWILIO_SAMPLE_RATE,
        close_reason=close_reason,
        before_close=closer.before_close,
        before_close_secs=MARK_WAIT_SECS + HANG_UP_TIMEOUT_SECS,
        end_silence_secs=0,  # the close waits for the end mark instead: nothing to pad
    )
