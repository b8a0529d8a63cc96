"""The FastAPI server: routes only. Sessions are built by `pipeline.session`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import FastAPI, WebSocket
from loguru import logger

from pipeline.resources import SharedResources
from pipeline.services import Providers, resolve_providers
from pipeline.session import VoiceSession
from pipeline.settings import Settings
from transports.browser import BROWSER_OUTPUT_SAMPLE_RATE, browser_transport


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

    @app.websocket("/ws")
    async def browser_session(websocket: WebSocket) -> None:
        runtime: Runtime = app.state.runtime
        await websocket.accept()
        session: VoiceSession | None = None
        transport = browser_transport(websocket, close_reason=lambda: session and session.end_reason)
        session = VoiceSession.build(
            transport,
            settings=runtime.settings,
            providers=runtime.providers,
            resources=runtime.resources,
            output_sample_rate=BROWSER_OUTPUT_SAMPLE_RATE,
        )
        transport.add_event_handler("on_client_disconnected", session.on_client_disconnected)
        runtime.sessions[session.session_id] = session
        logger.info(f"Session {session.session_id} started on /ws from {websocket.client}")
        try:
            await session.run()
        finally:
            runtime.sessions.pop(session.session_id, None)

    return app
