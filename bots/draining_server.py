"""Uvicorn, but SIGTERM first ends every call gracefully, then shuts down.

Uvicorn's own shutdown closes open WebSockets at once (code 1012), which would cut callers off
mid-sentence on every rolling restart. Here the first SIGTERM/SIGINT runs the app's drain
(goodbye to everyone, wait for them to end, bounded); only then does uvicorn shut down. A
second signal shuts down at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import FrameType

import uvicorn
from loguru import logger


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, *, drain: Callable[[], Awaitable[None]]):
        super().__init__(config)
        self._drain = drain
        self._draining: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets=None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets=sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._draining is not None or self._loop is None or not self.started:
            super().handle_exit(sig, frame)  # second signal, or not serving yet: exit now
            return
        logger.info("Shutdown requested: draining sessions first (signal again to stop at once)")
        self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        self._draining = asyncio.ensure_future(self._drain_then_exit())

    async def _drain_then_exit(self) -> None:
        try:
            await self._drain()
        finally:
            self.should_exit = True
