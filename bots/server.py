"""The FastAPI server: routes only. Sessions are built by `pipeline.session`."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import FastAPI, WebSocket
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
from transports.websocket_session import websocket_transport

SIMPLE_OUTPUT_SAMPLE_RATE = 24000


@dataclass
class Runtime:
    """What the routes share: settings, the chosen services, the loaded models, live sessions."""

    settings: Settings
    providers: Providers
    resources: SharedResources
    sessions: dict[str, VoiceSession] = field(default_factory=dict)


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

    return app
