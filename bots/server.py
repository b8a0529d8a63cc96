"""The FastAPI server: routes only. Sessions are built by `pipeline.session`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request, Response, WebSocket, status
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from loguru import logger
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.transports.base_transport import BaseTransport
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import ClientDisconnect, HTTPConnection

from bots.admission import Admission, RateWindow, Refused, Slot
from bots.auth import Access
from bots.client_address import client_address, client_key
from bots.private_guard import PrivateServerGuard
from pipeline import metrics
from pipeline.memory import release_freed_memory
from pipeline.profiles import Bot, BotProfiles, load_profiles
from pipeline.providers import Providers
from pipeline.resources import SharedResources
from pipeline.services import resolve_providers
from pipeline.session import VoiceSession
from pipeline.settings import Settings, trusted_networks
from processors.audio_chunker import InputAudioChunker
from processors.frames import EndReason
from transports.browser import BROWSER_OUTPUT_SAMPLE_RATE, browser_transport, finish_browser_session
from transports.simple_protocol import SimpleProtocolSerializer, finish_simple_session
from transports.simple_start import BadStart, ReplayingWebSocket, bot_named_in, first_message
from transports.twilio import (
    BOT_PARAMETER,
    TWILIO_SAMPLE_RATE,
    TwilioProtocolError,
    finish_call,
    read_handshake,
    signature_is_valid,
    stream_url,
    twilio_transport,
    twiml_connect,
    valid_sids,
    webhook_url,
)
from transports.websocket_session import websocket_transport

SIMPLE_OUTPUT_SAMPLE_RATE = 24000
STATIC_DIR = Path(__file__).parent / "static"  # built from web/ (see README); committed


# A transport's last step, after the pipeline: tell the client, hang up, close (see pipeline/session.py).
Finish = Callable[[EndReason], Awaitable[None]]
TRY_AGAIN_LATER = 1013  # RFC 6455: the server is overloaded; the client should retry later
BODY_READ_SECS = 5.0  # a request body that takes longer is refused (408)
WEBHOOK_MAX_BYTES = 64 * 1024  # Twilio's webhook form is a few kB; anything bigger is not Twilio
SESSION_REQUEST_MAX_BYTES = 4 * 1024  # `POST /session` takes at most {"bot": NAME}
PHONES_OFF = "phone calls are off: this server requires credentials and TWILIO_AUTH_TOKEN is not set"
# A captured upgrade signature works for every stream (Twilio signs a fixed URL), so streams not
# yet past their ticket check may hold only a few slots, briefly.
MAX_CALLS_CONNECTING = 4
BUSY_TWIML = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Say>Sorry, all our lines are busy. '
    "Please call again in a few minutes.</Say><Hangup/></Response>"
)


@dataclass
class Runtime:
    """What the routes share: settings, the chosen services, the loaded models, live sessions."""

    settings: Settings
    providers: Providers
    resources: SharedResources
    admission: Admission
    sessions: dict[str, VoiceSession] = field(default_factory=dict)

    @property
    def accepting(self) -> bool:
        """New sessions are welcome: not shutting down, and below VOICEBOT_MAX_SESSIONS."""
        return self.admission.accepting

    @property
    def draining(self) -> bool:
        return self.admission.draining


async def read_body(request: Request, limit: int) -> bytes | Response:
    """The request body, or the refusal to answer with: too large (413, as soon as it is known
    to pass `limit`), too slow (408 after `BODY_READ_SECS`: a trickled body holds a connection),
    or cut off by the client (400, quietly: nobody is left to read it)."""
    too_large = PlainTextResponse("request body too large", status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return too_large
    body = bytearray()
    try:
        async with asyncio.timeout(BODY_READ_SECS):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    return too_large
    except TimeoutError:
        return PlainTextResponse("request body too slow", status.HTTP_408_REQUEST_TIMEOUT)
    except ClientDisconnect:
        return PlainTextResponse("request body cut off", status.HTTP_400_BAD_REQUEST)
    return bytes(body)


async def refuse_upgrade(websocket: WebSocket, status_code: int, message: str) -> None:
    """Refuse a WebSocket before accepting it: an HTTP status with a reason where the server
    supports it, else a 1008 close (which the client sees as 403)."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        with contextlib.suppress(Exception):
            await websocket.send_denial_response(PlainTextResponse(message, status_code=status_code))
            return
    await close_quietly(websocket, status.WS_1008_POLICY_VIOLATION, message[:120])


async def close_quietly(websocket: WebSocket, code: int, reason: str = "") -> None:
    """Close a socket we are refusing; if the peer has already gone, there is nothing to say."""
    with contextlib.suppress(Exception):
        await websocket.close(code=code, reason=reason)


async def drain(app: FastAPI) -> None:
    """Stop taking sessions, give every live one its goodbye (reason server_shutdown), and wait
    for them to end, at most VOICEBOT_DRAIN_SECS. Phone calls are hung up properly."""
    runtime: Runtime = app.state.runtime
    runtime.admission.draining = True
    logger.info(
        f"Draining: ending {len(runtime.sessions)} session(s), waiting up to {runtime.settings.drain_secs:g}s"
    )
    ended: set[str] = set()
    deadline = asyncio.get_running_loop().time() + runtime.settings.drain_secs
    # Admitted connections still opening (a call's handshake, a first `start`) hold a slot and
    # become sessions: each is ended as it appears, until no slot is held.
    while (runtime.sessions or runtime.admission.reserved) and asyncio.get_running_loop().time() < deadline:
        for session_id, session in list(runtime.sessions.items()):
            if session_id not in ended:
                ended.add(session_id)
                await session.end(EndReason.SERVER_SHUTDOWN)
        await asyncio.sleep(0.1)
    if runtime.sessions:
        logger.warning(f"Drain timed out with {len(runtime.sessions)} session(s) still open")
    else:
        logger.info("Drained: no sessions left")


def new_session_id() -> str:
    """A server-side session id: logs, the drain and transcript file names never use a name
    the client chose."""
    return uuid.uuid4().hex[:12]


def app_from_environment() -> FastAPI:
    """App factory for worker processes (`voicebot serve --workers N`): each reads the settings."""
    from bots.logging_setup import configure_logging
    from pipeline.settings import load_settings

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)


def create_app(
    settings: Settings, *, bind_host: str | None = None, bots: BotProfiles | None = None
) -> FastAPI:
    """Build the app; models load in its lifespan, once per process, before the first call.
    `bots`: the validated profiles (read from VOICEBOT_PROFILES when not given)."""
    bots = bots or load_profiles(settings, resolve_providers(settings))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        providers = resolve_providers(settings)
        logger.info(f"voicebot starting: {providers.describe()}")
        resources = await SharedResources.load(providers, settings)
        max_sessions = settings.max_sessions or providers.measured_capacity
        # Per-client limits protect a public server; a private one has only local clients.
        admission = Admission(
            max_sessions=max_sessions,
            max_per_client=settings.max_sessions_per_client if access.public else 0,
            new_per_minute=settings.new_sessions_per_client_per_minute if access.public else 0,
        )
        app.state.runtime = Runtime(settings, providers, resources, admission)
        log_access_model(max_sessions)
        logger.info("voicebot ready")
        try:
            yield
        finally:
            await resources.close()

    app = FastAPI(title="voicebot", lifespan=lifespan)
    access = Access(settings, bind_host=bind_host or settings.host)
    if not access.public:
        app.add_middleware(PrivateServerGuard)
    proxies = trusted_networks(settings.trusted_proxies)
    page_tokens = RateWindow(settings.new_sessions_per_client_per_minute)
    # Credentials are required (public, or keys set) but Twilio's cannot be checked: no calls.
    phones_off = access.required and settings.twilio_auth_token is None
    calls_connecting = 0  # signed streams not yet past their ticket check
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    def log_access_model(max_sessions: int) -> None:
        """One line on how this server can be reached, so an operator sees a closed door."""
        mode = "public: API key or session token required" if access.required else "private: loopback only"
        logger.info(f"Access: {mode}; at most {max_sessions} sessions")
        if phones_off:
            logger.warning(f"Phone calls are off until TWILIO_AUTH_TOKEN is set ({PHONES_OFF})")
        if access.public and not settings.api_keys and not settings.anonymous_page_tokens:
            logger.warning(
                "Public server with no VOICEBOT_API_KEYS and VOICEBOT_ANONYMOUS_PAGE_TOKENS off: "
                "no browser or /ws/simple client can start a session"
            )

    def client_of(connection: HTTPConnection) -> str:
        return client_address(connection.client and connection.client.host, connection.headers, proxies)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        """The browser page: talk to the bot with Pipecat's official client."""
        return FileResponse(STATIC_DIR / "index.html")

    @app.get("/healthz")
    async def healthz() -> dict:
        runtime: Runtime = app.state.runtime
        return {
            "status": "ok",
            "providers": runtime.providers.describe(),
            "active_sessions": len(runtime.sessions),
            "bots": bots.names,
            "default_bot": bots.default,
        }

    async def run_session(
        websocket: WebSocket,
        transport: BaseTransport,
        finish: Finish,
        *,
        session_id: str,
        output_sample_rate: int,
        bot: Bot,
        input_processors: list[FrameProcessor] | None = None,
        text_frames: bool = False,
    ) -> None:
        """Run one session on an accepted WebSocket: the pipeline until it ends, then the
        transport's `finish(reason)` (see "How a session ends" in pipeline/session.py). Its
        slot is released by the caller of `admit`."""
        runtime: Runtime = app.state.runtime
        session = VoiceSession.build(
            transport,
            settings=runtime.settings,
            providers=runtime.providers,
            resources=runtime.resources,
            output_sample_rate=output_sample_rate,
            session_id=session_id,
            input_processors=input_processors,
            text_frames=text_frames,
            bot=bot,
        )
        transport.add_event_handler("on_client_disconnected", session.on_client_disconnected)
        runtime.sessions[session_id] = session
        metrics.SESSIONS_STARTED.labels(websocket.url.path, bot.name).inc()
        logger.info(
            f"Session {session_id} started on {websocket.url.path} from {client_of(websocket)} bot={bot.name}"
        )
        try:
            await finish(await session.run())
        finally:
            runtime.sessions.pop(session_id, None)
            await release_freed_memory()

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """For load balancers: 503 while full or draining, so new calls go elsewhere."""
        runtime: Runtime = app.state.runtime
        body = {"active_sessions": len(runtime.sessions), "max_sessions": runtime.admission.max_sessions}
        if runtime.accepting:
            return JSONResponse({"status": "ready", **body})
        return JSONResponse({"status": "draining" if runtime.draining else "full", **body}, status_code=503)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.post("/session")
    async def new_session_token(request: Request) -> JSONResponse:
        """A single-use token to open a session with (`?token=`). A backend holding an API key
        mints them for its users; the served page gets one only if the operator opted in."""
        origin, host = request.headers.get("origin"), request.headers.get("host", "")
        if not access.origin_allowed(origin, host):
            return JSONResponse({"error": "origin not allowed"}, status_code=403)
        keyed = access.key_presented(request.headers) or not access.required
        if not keyed and not (access.anonymous_page_tokens and origin):
            message = "POST /session needs an API key (Authorization: Bearer <key>)"
            return JSONResponse({"error": message}, status_code=401)
        bot = await requested_bot(request)
        if isinstance(bot, JSONResponse):
            return bot
        if not keyed and not page_tokens.allow(client_key(client_of(request))):
            return JSONResponse({"error": "too many session tokens; try again in a minute"}, status_code=429)
        token, expires_in = access.mint_session_token(anonymous=not keyed, bot=bot.name)
        return JSONResponse({"token": token, "expires_in": expires_in, "bot": bot.name})

    async def requested_bot(request: Request) -> Bot | JSONResponse:
        """The bot named by `POST /session`'s optional JSON body `{"bot": NAME}` (the default
        without one), or the refusal to send."""
        body = await read_body(request, SESSION_REQUEST_MAX_BYTES)
        if isinstance(body, Response):
            return JSONResponse({"error": body.body.decode()}, status_code=body.status_code)
        name = None
        if body.strip():
            try:
                payload = json.loads(body)
            except (ValueError, RecursionError):
                payload = None
            if not isinstance(payload, dict) or not isinstance(payload.get("bot", ""), str):
                return JSONResponse({"error": 'the body must be {"bot": "<name>"} or empty'}, status_code=400)
            name = payload.get("bot")
        bot = bots.get(name)
        if bot is None:
            return JSONResponse({"error": "unknown bot"}, status_code=404)
        return bot

    async def chosen_bot(websocket: WebSocket) -> Bot | None:
        """The bot named by `?bot=` (the default without it); an unknown name is refused before
        the upgrade with 404 (the name is only ever looked up among the profiles)."""
        bot = bots.get(websocket.query_params.get("bot"))
        if bot is None:
            logger.warning(f"Refused {websocket.url.path} from {client_of(websocket)}: unknown bot")
            await refuse_upgrade(websocket, status.HTTP_404_NOT_FOUND, "unknown bot")
        return bot

    async def admit(websocket: WebSocket, *, signed_call: bool = False, bot: str = "") -> Slot | None:
        """Check who is calling, reserve a slot (before any await, so a burst cannot overshoot),
        then accept. Refusals cost no pipeline: 403/401 before accepting, 1013 + reason after.
        A signed Twilio stream is exempt from credentials and per-client limits (all calls come
        from Twilio's few addresses); the caller releases the returned slot when done."""
        runtime: Runtime = app.state.runtime
        path, client = websocket.url.path, client_of(websocket)
        if not access.origin_allowed(websocket.headers.get("origin"), websocket.headers.get("host", "")):
            logger.warning(f"Refused {path} from {client}: origin {websocket.headers.get('origin')}")
            await refuse_upgrade(websocket, status.HTTP_403_FORBIDDEN, "origin not allowed")
            return None
        if not signed_call and not access.authorised(websocket.headers, websocket.query_params, bot):
            logger.warning(f"Refused {path} from {client}: no valid API key or session token")
            await refuse_upgrade(
                websocket, status.HTTP_401_UNAUTHORIZED, "an API key or a session token is required"
            )
            return None
        try:
            slot = runtime.admission.reserve(client_key(client), exempt=signed_call)
        except Refused as refused:
            metrics.SESSIONS_REFUSED.labels(path).inc()
            logger.warning(f"Refused a session on {path} from {client}: {refused.reason}")
            with contextlib.suppress(Exception):
                await websocket.accept()
            await close_quietly(websocket, TRY_AGAIN_LATER, refused.reason)
            return None
        try:
            await websocket.accept()
        except BaseException:
            slot.release()
            raise
        return slot

    @app.websocket("/ws")
    async def browser_session(websocket: WebSocket) -> None:
        bot = await chosen_bot(websocket)
        if bot is None:
            return
        slot = await admit(websocket, bot=bot.name)
        if slot is None:
            return
        try:
            await run_session(
                websocket,
                browser_transport(websocket),
                partial(finish_browser_session, websocket),
                session_id=new_session_id(),
                output_sample_rate=BROWSER_OUTPUT_SAMPLE_RATE,
                bot=bot,
            )
        finally:
            slot.release()

    @app.websocket("/ws/simple")
    async def simple_session(websocket: WebSocket) -> None:
        bot = await chosen_bot(websocket)
        if bot is None:
            return
        slot = await admit(websocket, bot=bot.name)
        if slot is None:
            return
        try:
            session_id = new_session_id()
            serializer = SimpleProtocolSerializer(
                session_id=session_id, output_sample_rate=SIMPLE_OUTPUT_SAMPLE_RATE
            )
            await websocket.send_text(serializer.ready_message())
            first = await first_message(websocket)
            if first is not None and first["type"] == "websocket.disconnect":
                return  # gone before a word: no pipeline for nobody
            bot = await bot_of_start(websocket, bot, first)
            if bot is None:
                return
            serializer.bot_name = bot.name
            replaying = ReplayingWebSocket(websocket, first)
            await run_session(
                websocket,
                websocket_transport(replaying, serializer, output_sample_rate=SIMPLE_OUTPUT_SAMPLE_RATE),
                partial(finish_simple_session, websocket),
                session_id=session_id,
                output_sample_rate=SIMPLE_OUTPUT_SAMPLE_RATE,
                bot=bot,
                input_processors=[InputAudioChunker()],
                text_frames=True,
            )
        finally:
            slot.release()

    async def bot_of_start(websocket: WebSocket, bot: Bot, first: dict | None) -> Bot | None:
        """`/ws/simple`: the bot a first `start` message names, else `bot`. With a session token
        only the token's bot may be named; an unknown or refused name gets an `error`, then a
        1008 close, before any pipeline is built."""
        try:
            name = bot_named_in(first)
        except BadStart as e:
            return await refuse_start(websocket, "bad_message", str(e))
        if name is None or name == bot.name:
            return bot
        named = bots.get(name) if name else None
        if named is None:
            return await refuse_start(websocket, "unknown_bot", "start.bot names no bot of this server")
        if "bot" in websocket.query_params:
            return await refuse_start(websocket, "bad_message", "?bot= and start.bot name different bots")
        if access.required and not access.key_presented(websocket.headers):
            message = f"this session token opens the bot {bot.name!r} only; mint one for {name!r}"
            return await refuse_start(websocket, "bot_not_allowed", message)
        return named

    async def refuse_start(websocket: WebSocket, code: str, message: str) -> None:
        logger.warning(f"Refused /ws/simple from {client_of(websocket)}: {code}")
        with contextlib.suppress(Exception):
            await websocket.send_text(json.dumps({"type": "error", "code": code, "message": message}))
        await close_quietly(websocket, status.WS_1008_POLICY_VIOLATION, code)
        return None

    @app.post("/twilio/voice")
    async def twilio_voice(request: Request) -> Response:
        """Twilio's voice webhook: answer the call with a media stream to /twilio/ws, carrying a
        signed ticket that binds the stream to this call."""
        if phones_off:
            return PlainTextResponse(PHONES_OFF, status_code=status.HTTP_403_FORBIDDEN)
        body = await read_body(request, WEBHOOK_MAX_BYTES)
        if isinstance(body, Response):
            return body
        form = dict(parse_qsl(body.decode(errors="replace"), keep_blank_values=True))
        url = webhook_url(settings, str(request.url))
        if not signature_is_valid(settings, url, form, request.headers.get("x-twilio-signature")):
            logger.warning(f"Rejected /twilio/voice from {client_of(request)}: bad X-Twilio-Signature")
            return PlainTextResponse("invalid Twilio signature", status_code=status.HTTP_403_FORBIDDEN)
        call_sid, account_sid = form.get("CallSid", ""), form.get("AccountSid", "")
        if not valid_sids(settings, call_sid, account_sid):
            logger.warning(f"Rejected /twilio/voice from {client_of(request)}: bad CallSid or AccountSid")
            return PlainTextResponse("bad CallSid or AccountSid", status_code=status.HTTP_400_BAD_REQUEST)
        if not app.state.runtime.accepting:
            metrics.SESSIONS_REFUSED.labels("/twilio/voice").inc()
            logger.warning(f"Call {call_sid} refused: lines busy")
            return Response(BUSY_TWIML, media_type="application/xml")
        bot = bots.for_number(form.get("To", ""))
        twiml = twiml_connect(
            stream_url(settings, request.headers.get("host", request.url.netloc), request.url.scheme),
            call_sid=call_sid,
            from_number=form.get("From", ""),
            to_number=form.get("To", ""),
            ticket=access.call_ticket(call_sid, account_sid, bot.name),
            bot=bot.name,
        )
        return Response(twiml, media_type="application/xml")

    @app.websocket("/twilio/ws")
    async def twilio_stream(websocket: WebSocket) -> None:
        """A call's media stream. Twilio signs the upgrade (over the stream URL); the `start`
        must then carry the ticket our webhook put in this call's TwiML."""
        if phones_off:
            await refuse_upgrade(websocket, status.HTTP_403_FORBIDDEN, PHONES_OFF)
            return
        scheme = "https" if websocket.url.scheme == "wss" else "http"
        url = stream_url(settings, websocket.headers.get("host", websocket.url.netloc), scheme)
        if not signature_is_valid(settings, url, {}, websocket.headers.get("x-twilio-signature")):
            logger.warning(f"Rejected /twilio/ws from {client_of(websocket)}: bad X-Twilio-Signature")
            await refuse_upgrade(websocket, status.HTTP_403_FORBIDDEN, "invalid Twilio signature")
            return
        nonlocal calls_connecting
        if calls_connecting >= MAX_CALLS_CONNECTING:
            logger.warning(
                f"Refused /twilio/ws from {client_of(websocket)}: {calls_connecting} calls connecting"
            )
            await refuse_upgrade(websocket, status.HTTP_429_TOO_MANY_REQUESTS, "too many calls connecting")
            return
        calls_connecting += 1
        connecting, slot = True, None
        try:
            slot = await admit(websocket, signed_call=True)
            if slot is None:
                return
            try:
                call = await read_handshake(websocket, settings, ticket_valid=access.call_ticket_valid)
            except TwilioProtocolError as e:
                logger.warning(f"Closed /twilio/ws from {client_of(websocket)}: {e}")
                await close_quietly(websocket, status.WS_1008_POLICY_VIOLATION, str(e)[:120])
                return
            finally:
                calls_connecting -= 1
                connecting = False
            # The ticket's signature covered this name, so it is the one our webhook chose.
            bot = bots.get(str(call.parameters.get(BOT_PARAMETER) or ""))
            if bot is None:  # a profile that existed when the call was answered, gone since
                await close_quietly(websocket, status.WS_1008_POLICY_VIOLATION, "unknown bot")
                return
            session_id = new_session_id()
            logger.info(f"Call {call.call_sid} connected (stream {call.stream_sid}) as session {session_id}")
            await run_session(
                websocket,
                twilio_transport(websocket, call),
                partial(finish_call, websocket, call, settings),
                session_id=session_id,
                output_sample_rate=TWILIO_SAMPLE_RATE,
                bot=bot,
            )
        finally:
            if connecting:
                calls_connecting -= 1
            if slot is not None:
                slot.release()

    return app
