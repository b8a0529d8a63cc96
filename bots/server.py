"""The FastAPI server: routes only. Sessions are built by `pipeline.session`."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request, Response, WebSocket, status
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from loguru import logger
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.transports.base_transport import BaseTransport
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bots.auth import Access
from pipeline import metrics
from pipeline.resources import SharedResources
from pipeline.services import Providers, resolve_providers
from pipeline.session import VoiceSession
from pipeline.settings import Settings
from processors.audio_chunker import InputAudioChunker
from processors.frames import EndReason
from transports.browser import BROWSER_OUTPUT_SAMPLE_RATE, browser_transport
from transports.simple_protocol import SimpleProtocolSerializer
from transports.twilio import (
    TWILIO_SAMPLE_RATE,
    TwilioProtocolError,
    read_handshake,
    signature_is_valid,
    stream_url,
    twilio_transport,
    twiml_connect,
    webhook_url,
)
from transports.websocket_session import websocket_transport

SIMPLE_OUTPUT_SAMPLE_RATE = 24000
STATIC_DIR = Path(__file__).parent / "static"  # built from web/ (see README); committed


TRY_AGAIN_LATER = 1013  # RFC 6455: the server is overloaded; the client should retry later
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
    sessions: dict[str, VoiceSession] = field(default_factory=dict)
    draining: bool = False

    @property
    def accepting(self) -> bool:
        """New sessions are welcome: not shutting down, and below VOICEBOT_MAX_SESSIONS."""
        return not self.draining and len(self.sessions) < self.settings.max_sessions


async def close_quietly(websocket: WebSocket, code: int, reason: str = "") -> None:
    """Close a socket we are refusing; if the peer has already gone, there is nothing to say."""
    with contextlib.suppress(Exception):
        await websocket.close(code=code, reason=reason)


async def drain(app: FastAPI) -> None:
    """Stop taking sessions, give every live one its goodbye (reason server_shutdown), and wait
    for them to end, at most VOICEBOT_DRAIN_SECS. Phone calls are hung up properly."""
    runtime: Runtime = app.state.runtime
    runtime.draining = True
    sessions = list(runtime.sessions.values())
    logger.info(
        f"Draining: ending {len(sessions)} session(s), waiting up to {runtime.settings.drain_secs:g}s"
    )
    for session in sessions:
        await session.end(EndReason.SERVER_SHUTDOWN)
    deadline = asyncio.get_running_loop().time() + runtime.settings.drain_secs
    while runtime.sessions and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
    if runtime.sessions:
        logger.warning(f"Drain timed out with {len(runtime.sessions)} session(s) still open")
    else:
        logger.info("Drained: no sessions left")


def app_from_environment() -> FastAPI:
    """App factory for worker processes (`voicebot serve --workers N`): each reads the settings."""
    from bots.cli import configure_logging
    from pipeline.settings import load_settings

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)


def create_app(settings: Settings, *, bind_host: str | None = None) -> FastAPI:
    """Build the app; models load in its lifespan, once per process, before the first call."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        providers = resolve_providers(settings)
        logger.info(f"voicebot starting: {providers.describe()}")
        resources = await SharedResources.load(providers, settings)
        app.state.runtime = Runtime(settings, providers, resources)
        logger.info("voicebot ready")
        try:
            yield
        finally:
            await resources.close()

    app = FastAPI(title="voicebot", lifespan=lifespan)
    access = Access(settings, bind_host=bind_host or settings.host)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

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
        }

    async def run_session(
        websocket: WebSocket,
        make_transport: Callable[[Callable[[], str | None]], BaseTransport],
        *,
        session_id: str,
        output_sample_rate: int,
        input_processors: list[FrameProcessor] | None = None,
    ) -> None:
        """Run one session on an accepted WebSocket until it ends."""
        runtime: Runtime = app.state.runtime
        session: VoiceSession | None = None
        transport = make_transport(lambda: session and session.end_reason)
        session = VoiceSession.build(
            transport,
            settings=runtime.settings,
            providers=runtime.providers,
            resources=runtime.resources,
            output_sample_rate=output_sample_rate,
            session_id=session_id,
            input_processors=input_processors,
        )
        transport.add_event_handler("on_client_disconnected", session.on_client_disconnected)
        runtime.sessions[session_id] = session
        metrics.SESSIONS_STARTED.labels(websocket.url.path).inc()
        logger.info(f"Session {session_id} started on {websocket.url.path} from {websocket.client}")
        try:
            await session.run()
        finally:
            runtime.sessions.pop(session_id, None)

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """For load balancers: 503 while full or draining, so new calls go elsewhere."""
        runtime: Runtime = app.state.runtime
        body = {"active_sessions": len(runtime.sessions), "max_sessions": runtime.settings.max_sessions}
        if runtime.accepting:
            return JSONResponse({"status": "ready", **body})
        return JSONResponse({"status": "draining" if runtime.draining else "full", **body}, status_code=503)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.post("/session")
    async def new_session_token(request: Request) -> JSONResponse:
        """A short-lived token for the served page to open a session with (`?token=`)."""
        if not access.origin_allowed(request.headers.get("origin"), request.headers.get("host", "")):
            return JSONResponse({"error": "origin not allowed"}, status_code=403)
        token, expires_in = access.issue_token()
        return JSONResponse({"token": token, "expires_in": expires_in})

    async def admit(websocket: WebSocket) -> bool:
        """Check who is calling, then accept; if we cannot take the session, close with 1013."""
        runtime: Runtime = app.state.runtime
        host = websocket.headers.get("host", "")
        if not access.origin_allowed(websocket.headers.get("origin"), host):
            logger.warning(f"Refused {websocket.url.path} from origin {websocket.headers.get('origin')}")
            await close_quietly(websocket, status.WS_1008_POLICY_VIOLATION)  # before accept: HTTP 403
            return False
        if websocket.url.path != "/twilio/ws" and not access.authorised(
            websocket.headers, websocket.query_params
        ):
            logger.warning(f"Refused {websocket.url.path} from {websocket.client}: no valid API key or token")
            await close_quietly(websocket, status.WS_1008_POLICY_VIOLATION)
            return False
        await websocket.accept()
        if runtime.accepting:
            return True
        metrics.SESSIONS_REFUSED.labels(websocket.url.path).inc()
        reason = "server shutting down" if runtime.draining else "server full"
        logger.warning(f"Refused a session on {websocket.url.path}: {reason}")
        await close_quietly(websocket, TRY_AGAIN_LATER, reason)
        return False

    @app.websocket("/ws")
    async def browser_session(websocket: WebSocket) -> None:
        if not await admit(websocket):
            return
        await run_session(
            websocket,
            lambda close_reason: browser_transport(websocket, close_reason),
            session_id=uuid.uuid4().hex[:12],
            output_sample_rate=BROWSER_OUTPUT_SAMPLE_RATE,
        )

    @app.websocket("/ws/simple")
    async def simple_session(websocket: WebSocket) -> None:
        if not await admit(websocket):
            return
        session_id = uuid.uuid4().hex[:12]
        serializer = SimpleProtocolSerializer(
            session_id=session_id, output_sample_rate=SIMPLE_OUTPUT_SAMPLE_RATE
        )
        await websocket.send_text(serializer.ready_message())
        await run_session(
            websocket,
            lambda close_reason: websocket_transport(
                websocket, serializer, output_sample_rate=SIMPLE_OUTPUT_SAMPLE_RATE, close_reason=close_reason
            ),
            session_id=session_id,
            output_sample_rate=SIMPLE_OUTPUT_SAMPLE_RATE,
            input_processors=[InputAudioChunker()],
        )

    @app.post("/twilio/voice")
    async def twilio_voice(request: Request) -> Response:
        """Twilio's voice webhook: answer the call with a media stream to /twilio/ws."""
        settings: Settings = app.state.runtime.settings
        form = dict(parse_qsl((await request.body()).decode(errors="replace"), keep_blank_values=True))
        url = webhook_url(settings, str(request.url))
        if not signature_is_valid(settings, url, form, request.headers.get("x-twilio-signature")):
            logger.warning(f"Rejected /twilio/voice from {request.client}: bad X-Twilio-Signature")
            return Response("invalid Twilio signature", status_code=status.HTTP_403_FORBIDDEN)
        if not app.state.runtime.accepting:
            metrics.SESSIONS_REFUSED.labels("/twilio/voice").inc()
            logger.warning(f"Call {form.get('CallSid', '?')} refused: lines busy")
            return Response(BUSY_TWIML, media_type="application/xml")
        twiml = twiml_connect(
            stream_url(settings, request.headers.get("host", request.url.netloc), request.url.scheme),
            call_sid=form.get("CallSid", ""),
            from_number=form.get("From", ""),
            to_number=form.get("To", ""),
        )
        return Response(twiml, media_type="application/xml")

    @app.websocket("/twilio/ws")
    async def twilio_stream(websocket: WebSocket) -> None:
        """A call's media stream; Twilio signs the upgrade over the stream URL it was given."""
        settings: Settings = app.state.runtime.settings
        scheme = "https" if websocket.url.scheme == "wss" else "http"
        url = stream_url(settings, websocket.headers.get("host", websocket.url.netloc), scheme)
        if not signature_is_valid(settings, url, {}, websocket.headers.get("x-twilio-signature")):
            logger.warning(f"Rejected /twilio/ws from {websocket.client}: bad X-Twilio-Signature")
            await close_quietly(websocket, status.WS_1008_POLICY_VIOLATION)  # before accept: HTTP 403
            return
        if not await admit(websocket):
            return
        try:
            call = await read_handshake(websocket)
        except TwilioProtocolError as e:
            logger.warning(f"Closed /twilio/ws from {websocket.client}: {e}")
            await close_quietly(websocket, status.WS_1008_POLICY_VIOLATION, str(e)[:120])
            return
        logger.info(f"Call {call.call_sid} connected (stream {call.stream_sid})")
        await run_session(
            websocket,
            lambda close_reason: twilio_transport(websocket, call, settings, close_reason),
            session_id=call.call_sid,
            output_sample_rate=TWILIO_SAMPLE_RATE,
        )

    return app
