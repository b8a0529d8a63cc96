"""A WebSocket wrapper that closes with the session's end reason."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import WebSocket

NORMAL_CLOSURE = 1000
MAX_CLOSE_REASON_BYTES = 123  # RFC 6455 §5.5: a control frame's payload is at most 125 bytes


class ClosingWebSocket:
    """Delegates everything to a FastAPI WebSocket, but `close()` sends 1000 and the end reason.

    Pipecat's WebSocket transports close with a bare `close()`, so the client cannot tell an
    idle hang-up from a crash. This gives the close frame the reason (`idle_timeout`, ...).
    """

    def __init__(self, websocket: WebSocket, reason: Callable[[], str | None]):
        self._websocket = websocket
        self._reason = reason

    def __getattr__(self, name: str):
        return getattr(self._websocket, name)

    async def close(self, code: int = NORMAL_CLOSURE, reason: str | None = None) -> None:
        reason = reason or self._reason() or ""
        await self._websocket.close(code, reason.encode()[:MAX_CLOSE_REASON_BYTES].decode(errors="ignore"))
