"""Phone calls over Twilio Media Streams: TwiML, the stream handshake, marks and the hang-up.

Pipecat's `TwilioFrameSerializer` converts audio (8 kHz μ-law ↔ PCM) and interruptions
(`clear`). What it does not do, we add here: the goodbye is heard in full (a `mark` after it;
`finish_call` waits for Twilio to echo that mark, since Twilio plays audio after we send it),
the REST hang-up comes after that and never when the caller already hung up, and requests are
checked against Twilio's signature.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from fastapi import WebSocket
from loguru import logger
from pipecat.frames.frames import (
    Frame,
    OutputTransportMessageFrame,
    OutputTransportMessageUrgentFrame,
)
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.transports.websocket.fastapi import FastAPIWebsocketTransport
from starlette.websockets import WebSocketDisconnect
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Connect, VoiceResponse

from pipeline import metrics
from pipeline.settings import Settings
from processors.frames import ClientHangupFrame, EndReason, SessionEndedMessageFrame
from transports.audio_budget import AudioBudget
from transports.websocket_session import close_with_reason, connected, websocket_transport

TWILIO_SAMPLE_RATE = 8000
STREAM_PATH = "/twilio/ws"
END_MARK = "voicebot-session-end"
MARK_WAIT_SECS = 20.0  # the longest a goodbye may take to play out before we hang up anyway
HANG_UP_TIMEOUT_SECS = 10.0
TICKET_PARAMETER = "voicebotTicket"
BOT_PARAMETER = "voicebotBot"  # the profile the webhook chose; covered by the ticket's signature
# Twilio sends `connected` and `start` as soon as the stream opens; an upgrade that says
# nothing holds a slot, so it gets little time.
HANDSHAKE_SECS = 5.0
# A `media` event carries 20 ms (about 350 bytes); `start` a few kB. Bigger is not Twilio.
MAX_EVENT_BYTES = 64 * 1024
# Twilio streams in real time; a little jitter may bunch packets, a flood is dropped.
MEDIA_BURST_SECS = 10.0
CALL_SID = re.compile(r"CA[0-9a-fA-F]{32}")
ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")


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


def valid_sids(settings: Settings, call_sid: str, account_sid: str) -> bool:
    """Twilio's id formats (`CA`/`AC` + 32 hex digits), and our own account when we know it.
    These ids end up in the REST hang-up URL, so nothing else may pass."""
    return (
        CALL_SID.fullmatch(call_sid) is not None
        and ACCOUNT_SID.fullmatch(account_sid) is not None
        and (not settings.twilio_account_sid or account_sid == settings.twilio_account_sid)
    )


def twiml_connect(
    url: str, *, call_sid: str, from_number: str, to_number: str, ticket: str, bot: str = ""
) -> str:
    """`<Connect><Stream>` with the caller's details and this call's signed ticket as parameters,
    and nothing after it.

    A `<Pause>` after `<Connect>` would keep a dead call open for its length (Pipecat PR #5135).
    """
    response = VoiceResponse()
    connect = Connect()
    stream = connect.stream(url=url)
    stream.parameter(name="from", value=from_number)
    stream.parameter(name="to", value=to_number)
    stream.parameter(name="callSid", value=call_sid)
    stream.parameter(name=TICKET_PARAMETER, value=ticket)
    if bot:
        stream.parameter(name=BOT_PARAMETER, value=bot)
    response.append(connect)
    return str(response)


def signature_is_valid(settings: Settings, url: str, params: dict, signature: str | None) -> bool:
    """With TWILIO_AUTH_TOKEN set, a request must carry Twilio's signature over `url` + `params`."""
    if settings.twilio_auth_token is None:
        return True
    validator = RequestValidator(settings.twilio_auth_token.get_secret_value())
    return bool(signature) and validator.validate(url, params, signature)


def parse_event(data: str | bytes) -> dict | None:
    """A Twilio event as a dict, or None for anything too big to be one or not JSON."""
    if len(data) > MAX_EVENT_BYTES:
        return None
    try:
        message = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, RecursionError):
        return None
    return message if isinstance(message, dict) else None


TicketCheck = Callable[[str, str, str, str], bool]  # (ticket, call_sid, account_sid, bot) -> valid, once


async def read_handshake(
    websocket: WebSocket, settings: Settings, *, ticket_valid: TicketCheck, timeout: float = HANDSHAKE_SECS
) -> TwilioCall:
    """Read `connected` (optional) and `start`; the start must name a real-format call of our
    account and carry the ticket our TwiML gave that call. Anything else is a protocol error."""

    async def first_start() -> TwilioCall:
        while True:
            message = parse_event(await websocket.receive_text()) or {}
            event = message.get("event")
            if event == "connected":
                continue
            if event != "start":
                raise TwilioProtocolError(f"expected a start event, got {str(event)[:40]!r}")
            start = message.get("start")
            start = start if isinstance(start, dict) else {}
            parameters = start.get("customParameters")
            parameters = parameters if isinstance(parameters, dict) else {}
            stream_sid, call_sid, account_sid = (
                str(start.get(key) or "") for key in ("streamSid", "callSid", "accountSid")
            )
            if not stream_sid or not valid_sids(settings, call_sid, account_sid):
                raise TwilioProtocolError("the start event has no streamSid or a bad callSid/accountSid")
            ticket, bot = (str(parameters.get(name) or "") for name in (TICKET_PARAMETER, BOT_PARAMETER))
            if not ticket_valid(ticket, call_sid, account_sid, bot):
                raise TwilioProtocolError(
                    "the stream's ticket is missing, spent, expired or for another call"
                )
            return TwilioCall(stream_sid, call_sid, account_sid, parameters)

    try:
        return await asyncio.wait_for(first_start(), timeout)
    except (TimeoutError, KeyError, TypeError, WebSocketDisconnect) as e:
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
        self._budget = AudioBudget(burst_secs=MEDIA_BURST_SECS)

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
        """Marks and `stop` are ours; audio ahead of real time (a flood, not a phone line) and
        messages too big to be Twilio's are dropped before they are decoded."""
        message = parse_event(data)
        event = message.get("event") if message else None
        if event == "mark":
            note_mark(self._call, message)
            return None
        if event == "stop":
            self._call.caller_hung_up = True
            return ClientHangupFrame()
        if message is None:
            return self._dropped("oversized" if len(data) > MAX_EVENT_BYTES else "malformed")
        if event != "media":
            return None  # dtmf and the like: nothing for the pipeline
        media = message.get("media")
        payload = media.get("payload") if isinstance(media, dict) else None
        if not isinstance(payload, str):
            return self._dropped("malformed")
        # μ-law is one byte per 8 kHz sample: the duration is known before anything is decoded.
        if not self._budget.allow(len(payload) * 3 / 4 / TWILIO_SAMPLE_RATE):
            return self._dropped("ahead_of_real_time")
        try:
            return await super().deserialize(data)
        except Exception:  # a malformed media payload: not audio
            return self._dropped("malformed")

    @staticmethod
    def _dropped(reason: str) -> None:
        return metrics.drop_client_input(STREAM_PATH, reason)


def note_mark(call: TwilioCall, message: dict) -> None:
    mark = message.get("mark")
    if isinstance(mark, dict) and mark.get("name") == END_MARK:
        call.end_mark_played.set()


async def finish_call(websocket: WebSocket, call: TwilioCall, settings: Settings, reason: EndReason) -> None:
    """After the pipeline: wait (bounded) until the caller has heard the goodbye, hang up
    through the REST API unless the caller already did, then close the stream with the reason.

    Twilio plays audio after we send it, so the goodbye has been heard only when Twilio echoes
    the end mark. An echo that came while Pipecat still read the stream was recorded by
    `CallSerializer`; one still to come is read here, from the socket Pipecat has let go of.
    """
    await wait_for_end_mark(websocket, call)
    await CallHangUp(call, settings).hang_up()
    await close_with_reason(websocket, reason)


async def wait_for_end_mark(websocket: WebSocket, call: TwilioCall) -> None:
    """Read the stream (bounded in time; each event bounded in size before it is parsed) until
    the end mark comes back, the caller hangs up, or the stream closes."""
    if call.caller_hung_up or not call.end_mark_sent or call.end_mark_played.is_set():
        return
    try:
        async with asyncio.timeout(MARK_WAIT_SECS):
            while not call.end_mark_played.is_set() and connected(websocket):
                received = await websocket.receive()
                if received["type"] == "websocket.disconnect":
                    call.caller_hung_up = True
                    return
                message = parse_event(received.get("text") or "") or {}  # binary: not Twilio's
                if message.get("event") == "stop":
                    call.caller_hung_up = True
                    return
                if message.get("event") == "mark":
                    note_mark(call, message)
    except TimeoutError:
        logger.warning(f"Call {call.call_sid}: no echo of the end mark in {MARK_WAIT_SECS:g}s; hanging up")
    except (WebSocketDisconnect, RuntimeError):
        call.caller_hung_up = True


class CallHangUp:
    """Ends the call itself through Twilio's REST API (closing the stream alone leaves the
    caller on a silent line until the TwiML runs out)."""

    def __init__(self, call: TwilioCall, settings: Settings):
        self._call = call
        self._settings = settings

    async def hang_up(self) -> None:
        """Hang up through the REST API, unless the caller already did. The ids in the URL were
        validated at the handshake (`valid_sids`), and are checked again here."""
        call = self._call
        token = self._settings.twilio_auth_token
        account = self._settings.twilio_account_sid or call.account_sid
        if call.caller_hung_up or not valid_sids(self._settings, call.call_sid, account):
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


def twilio_transport(websocket: WebSocket, call: TwilioCall) -> FastAPIWebsocketTransport:
    """The call's transport: 8 kHz μ-law both ways; its ending is `finish_call`."""
    return websocket_transport(
        websocket,
        CallSerializer(call),
        output_sample_rate=TWILIO_SAMPLE_RATE,
        end_silence_secs=0,  # the finish waits for the end mark instead: nothing to pad
    )
