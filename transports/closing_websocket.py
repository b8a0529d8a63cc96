"""A WebSocket wrapper that closes with the session's end reason."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import WebSocket
from starlette.websockets import WebSocketState

NORMAL_CLOSURE = 1000
MAX_CLOSE_REASON_BYTES = 123  # RFC 6455 §5.5: a control frame's payload is at most 125 bytes


class ClosingWebSocket:
    """Delegates everything to a FastAPI WebSocket, but `close()` sends 1000 and the end reason.

    An optional hook runs just before the close.

    Pipecat's WebSocket transports close with a bare `close()`, so the client cannot tell an
    idle hang-up from a crash. This gives the close frame the reason (`idle_timeout`, ...).
    """

    def __init__(
        self,
        websocket: WebSocket,
        reason: Callable[[], str | None],
        *,
        before_close: Callable[[WebSocket], Awaitable[None]] | None = None,
    ):
        self._websocket = websocket
        self._reason = reason
        self._before_close = before_close

    def __getattr__(self, name: str):
        return getattr(self._websocket, name)

    async def close(self, code: int = NORMAL_CLOSURE, reason: str | None = None) -> None:
        """Close with the reason; the hook lets a protocol finish first (e.g. a phone call)."""
        if self._before_close is not None:
            await self._before_close(self._websocket)
        if self._websocket.client_state != WebSocketState.CONNECTED:
            return  # the client closed first
        reason = reason or self._reason() or ""
        await self._websocket.close(code, reason.encode()[:MAX_CLOSE_REASON_BYTES].decode(errors="ignore"))
