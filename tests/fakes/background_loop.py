"""An asyncio loop on its own thread, so fakes serve while sync or async tests drive the server."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable

from tests.support.server import free_port


class BackgroundServer:
    """Base for the network-edge fakes: `start()` runs `serve()` on a private loop and thread."""

    def __init__(self) -> None:
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)
        self._shutdown: Callable[[], Awaitable[None]] | None = None

    async def serve(self) -> Callable[[], Awaitable[None]]:
        """Start listening on `self.port`; return a coroutine function that stops serving."""
        raise NotImplementedError

    def start(self):
        self._thread.start()
        if not self._ready.wait(15):
            raise RuntimeError(f"{type(self).__name__} did not start")
        return self

    def stop(self) -> None:
        if self._shutdown is not None:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._shutdown = self._loop.run_until_complete(self.serve())
        self._ready.set()
        self._loop.run_forever()
