"""The FastAPI server: routes only. Sessions are built by `pipeline.session`."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request, Response, WebSocket, status
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from loguru import logger
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.transports.base_transport import BaseTransport

from pipeline.resources import SharedResources
from pipeline.services import Providers, resolve_providers
from pipeline.session import VoiceSession
from pipeline.settings import Settings
from processors.audio_chunker import InputAudioChunker
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


@dataclass
class Runtime:
    """What the routes share: settings, the chosen services, the loaded models, live sessions."""

    settings: Settings
    providers: Providers
    resources: SharedResources
    sessions: dict[str, VoiceSession] = field(default_factory=dict)


def app_from_environment() -> FastAPI:
    """App factory for worker processes (`voicebot serve --workers N`): each reads the settings."""
    from bots.cli import configure_logging
    from pipeline.settings import load_settings

    settings = load_settings()
    configure_logging(settings.log_level)
    return create_app(settings)


def create_app(settings: Settings) -> FastAPI:
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
        logger.info(f"Session {session_id} started on {websocket.url.path} from {websocket.client}")
        try:
            await session.run()
        finally:
            runtime.sessions.pop(session_id, None)

    @app.websocket("/ws")
    async def browser_session(websocket: WebSocket) -> None:
        await websocket.accept()
        await run_session(
            websocket,
            lambda close_reason: browser_transport(websocket, close_reason),
            session_id=uuid.uuid4().hex[:12],
            output_sample_rate=BROWSER_OUTPUT_SAMPLE_RATE,
        )

    @app.websocket("/ws/simple")
    async def simple_session(websocket: WebSocket) -> None:
        await websocket.accept()
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
            await websocket.close(code=status.WS_1008_POLICY_VIOLATION)  # before accept: HTTP 403
            return
        await websocket.accept()
        try:
            call = await read_handshake(websocket)
        except TwilioProtocolError as e:
            logger.warning(f"Closed /twilio/ws from {websocket.client}: {e}")
            await websocket.close(code=status.WS_1008_POLICY_VIOLATION, reason=str(e)[:120])
            return
        logger.info(f"Call {call.call_sid} connected (stream {call.stream_sid})")
        await run_session(
            websocket,
            lambda close_reason: twilio_transport(websocket, call, settings, close_reason),
            session_id=call.call_sid,
            output_sample_rate=TWILIO_SAMPLE_RATE,
        )

    return app
