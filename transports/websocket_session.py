"""A FastAPI WebSocket transport for one session, whatever its wire protocol (serializer)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import WebSocket
from pipecat.serializers.base_serializer import FrameSerializer
from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams, FastAPIWebsocketTransport

from transports.closing_websocket import ClosingWebSocket

CLOSE_HANDSHAKE_SECS = 0.5  # Pipecat's default wait for the peer to acknowledge our close


class SessionWebsocketTransport(FastAPIWebsocketTransport):
    """Pipecat's FastAPI transport, which also cleans up its serializer when the session ends
    (Pipecat never does: a serializer holding a resource, like a decoding thread, would leak it)."""

    async def cleanup(self) -> None:
        await super().cleanup()
        if self._params.serializer is not None:
            await self._params.serializer.cleanup()


def websocket_transport(
    websocket: WebSocket,
    serializer: FrameSerializer,
    *,
    output_sample_rate: int,
    close_reason: Callable[[], str | None],
    before_close: Callable[[WebSocket], Awaitable[None]] | None = None,
    before_close_secs: float = 0.0,
    end_silence_secs: int = 2,
) -> FastAPIWebsocketTransport:
    """16 kHz audio in, `output_sample_rate` out; closes with 1000 and `close_reason()` at the end.

    `before_close` runs first, for at most `before_close_secs`: Pipecat bounds the whole close
    (0.5 s by default) and would otherwise drop the connection without a close frame.
    """
    return SessionWebsocketTransport(
        ClosingWebSocket(websocket, close_reason, before_close=before_close),
        FastAPIWebsocketParams(
            audio_in_enabled=True,
            audio_out_enabled=True,
            audio_out_sample_rate=output_sample_rate,
            audio_out_end_silence_secs=end_silence_secs,
            ws_close_timeout=CLOSE_HANDSHAKE_SECS + before_close_secs,
            serializer=serializer,
        ),
    )
