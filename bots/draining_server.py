"""Uvicorn, but SIGTERM first ends every call gracefully, then shuts down; with or without workers.

Uvicorn's own shutdown closes open WebSockets at once (code 1012), which would cut callers off
mid-sentence on every rolling restart. Here the first SIGTERM/SIGINT runs the app's drain
(goodbye to everyone, wait for them to end, bounded); only then does uvicorn shut down. A
second signal shuts down at once.

With `--workers N`, uvicorn's own supervisor runs the workers (restarts a dead one, forwards
SIGTERM to each); each worker is a `DrainingServer` draining its own sessions, and the
supervisor exits once they all have.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from types import FrameType

import uvicorn
from loguru import logger
from uvicorn.supervisors import multiprocess

# A terminal's Ctrl-C reaches every process of the group, and the supervisor then forwards a
# SIGTERM to each worker: a second signal this soon after the first is the same request.
SAME_REQUEST_SECS = 2.0


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, *, drain: Callable[[], Awaitable[None]]):
        super().__init__(config)
        self._drain = drain
        self._draining: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._first_signal_at = 0.0

    async def startup(self, sockets=None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets=sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._first_signal_at and time.monotonic() - self._first_signal_at < SAME_REQUEST_SECS:
            return
        if self._first_signal_at or self._loop is None or not self.started:
            super().handle_exit(sig, frame)  # second signal, or not serving yet: exit now
            return
        self._first_signal_at = time.monotonic()
        logger.info("Shutdown requested: draining sessions first (signal again to stop at once)")
        self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        self._draining = asyncio.ensure_future(self._drain_then_exit())

    async def _drain_then_exit(self) -> None:
        try:
            await self._drain()
        finally:
            self.should_exit = True


async def _drain_loaded_app(config: uvicorn.Config) -> None:
    """The drain of the app this worker process loaded (behind uvicorn's middleware)."""
    from fastapi import FastAPI

    from bots.server import drain

    app = config.loaded_app
    while not isinstance(app, FastAPI):
        app = app.app
    await drain(app)


class DrainingWorkerProcess(multiprocess.Process):
    """A uvicorn worker process whose server drains before it stops."""

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            drain = functools.partial(_drain_loaded_app, self.config)
            self._server = DrainingServer(self.config, drain=drain)
        return self._server


def run_draining_workers(config: uvicorn.Config) -> None:
    """`uvicorn.run(..., workers=N)`, with workers that drain on SIGTERM."""
    socket = config.bind_socket()
    # The supervisor builds (and rebuilds) its workers from this module attribute; it is only
    # read in this supervising process, and put back afterwards.
    original, multiprocess.Process = multiprocess.Process, DrainingWorkerProcess
    try:
        multiprocess.Multiprocess(config, sockets=[socket]).run()
    finally:
        multiprocess.Process = original
