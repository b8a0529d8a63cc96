"""A private server (loopback bind, no VOICEBOT_PUBLIC_URL) serves only plainly local requests.

Loopback asks for no credentials, which is only safe while nothing but this machine can reach
it. A tunnel (cloudflared, ngrok) or a reverse proxy forwards the internet to 127.0.0.1, and a
DNS-rebinding page reaches it under its own host name; both are refused here, before routing,
with a message that says how to publish the server properly.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from bots.auth import PRIVATE_HINT, private_refusal

FORBIDDEN = 403


async def deny(scope: Scope, receive: Receive, send: Send, status: int, message: str) -> None:
    """Refuse an HTTP request or a WebSocket upgrade with `status` and a one-line reason."""
    body = message.encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    await receive()  # websocket.connect
    if "websocket.http.response" in scope.get("extensions", {}):
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})


class PrivateServerGuard:
    """ASGI middleware: on a private server, 403 for proxied or non-local-Host requests."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            refusal = private_refusal(Headers(scope=scope))
            if refusal:
                await deny(scope, receive, send, FORBIDDEN, refusal + PRIVATE_HINT)
                return
        await self.app(scope, receive, send)
