"""A FastAPI WebSocket transport for one session, whatever its wire protocol (serializer)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import WebSocket
from pipecat.serializers.base_serializer import FrameSerializer
from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams, FastAPIWebsocketTransport

from transports.closing_websocket import ClosingWebSocket


def websocket_transport(
    websocket: WebSocket,
    serializer: FrameSerializer,
    *,
    output_sample_rate: int,
    close_reason: Callable[[], str | None],
) -> FastAPIWebsocketTransport:
    """16 kHz audio in, `output_sample_rate` out; closes with 1000 and `close_reason()` at the end."""
    return FastAPIWebsocketTransport(
        ClosingWebSocket(websocket, close_reason),
        FastAPIWebsocketParams(
            audio_in_enabled=True,
            audio_out_enabled=True,
            audio_out_sample_rate=output_sample_rate,
            serializer=serializer,
        ),
    )
