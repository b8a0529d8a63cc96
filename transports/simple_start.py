"""`/ws/simple`: a bot named in the client's first `start` message, read before the session is built.

The bot decides the whole pipeline (its voice, prompt, timeouts), so it must be known before
the session starts. Right after `ready` the server waits briefly for the client's first message;
if that is a `start` naming a `bot`, the session is built for it. Whatever the first message
was, the session's transport then receives it like any other, so no audio is lost.
"""

from __future__ import annotations

import asyncio
import json

from fastapi import WebSocket

from transports.simple_protocol import MAX_JSON_BYTES

START_WINDOW_SECS = 0.5  # a client that sends `start` does so at once; others lose at most this


class BadStart(ValueError):
    """The first `start` names its bot wrongly (not a string); the message is for the client."""


async def first_message(websocket: WebSocket, timeout: float = START_WINDOW_SECS) -> dict | None:
    """The client's first ASGI message if it arrives within `timeout`, else None."""
    try:
        return await asyncio.wait_for(websocket.receive(), timeout)
    except TimeoutError:
        return None


def bot_named_in(message: dict | None) -> str | None:
    """The `bot` of a first `start` message; None when it names none (or is not a `start`)."""
    text = (message or {}).get("text")
    if not isinstance(text, str) or len(text) > MAX_JSON_BYTES:
        return None
    try:
        command = json.loads(text)
    except (ValueError, RecursionError):
        return None  # the serializer answers it with its own error
    if not isinstance(command, dict) or command.get("type") != "start" or "bot" not in command:
        return None
    if not isinstance(command["bot"], str):
        raise BadStart("start.bot must be a string")
    return command["bot"]


class ReplayingWebSocket:
    """A FastAPI WebSocket whose first `receive()` returns a message already read."""

    def __init__(self, websocket: WebSocket, message: dict | None):
        self._websocket = websocket
        self._message = message

    def __getattr__(self, name: str):
        return getattr(self._websocket, name)

    async def receive(self) -> dict:
        if self._message is not None:
            message, self._message = self._message, None
            return message
        return await self._websocket.receive()
