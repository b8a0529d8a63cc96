"""A FastAPI WebSocket transport for one session, whatever its wire protocol (serializer).

Pipecat's transport closes its socket when the pipeline ends, with a bare `close()` bounded
by a short timeout. The route needs the socket after that: a phone call must wait for Twilio
to play the goodbye and be hung up, a page gets a moment to hang up itself, and every client
is told the reason in the close frame. So Pipecat is handed a `HeldWebSocket` whose `close()`
does nothing; the route closes the real socket in its `finish` step, after
`VoiceSession.run()` has returned (see "How a session ends" in `pipeline/session.py`).
"""

from __future__ import annotations

import contextlib

from fastapi import WebSocket
from pipecat.serializers.base_serializer import FrameSerializer
from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams, FastAPIWebsocketTransport
from starlette.websockets import WebSocketState

from processors.frames import EndReason
from transports.websocket_audio_input import WebsocketAudioInput

NORMAL_CLOSURE = 1000
MAX_CLOSE_REASON_BYTES = 123  # RFC 6455 §5.5: a control frame's payload is at most 125 bytes


class HeldWebSocket:
    """The socket as Pipecat sees it: everything is delegated, except that `close()` does not
    close. The route that accepted the socket closes it when the session has finished."""

    def __init__(self, websocket: WebSocket):
        self._websocket = websocket

    def __getattr__(self, name: str):
        return getattr(self._websocket, name)

    async def close(self, code: int = NORMAL_CLOSURE, reason: str | None = None) -> None:
        """Pipecat is done with the socket; the route finishes and closes it."""


def connected(websocket: WebSocket) -> bool:
    """The client is still there and we have not closed."""
    return (
        websocket.client_state == WebSocketState.CONNECTED
        and websocket.application_state == WebSocketState.CONNECTED
    )


async def close_with_reason(websocket: WebSocket, reason: EndReason) -> None:
    """Close with 1000 and the end reason, so a client can tell an idle hang-up from a crash.
    A client that already left needs nothing."""
    if not connected(websocket):
        return
    with contextlib.suppress(RuntimeError, OSError):  # it left while we were closing
        await websocket.close(NORMAL_CLOSURE, str(reason).encode()[:MAX_CLOSE_REASON_BYTES].decode())


class SessionWebsocketTransport(FastAPIWebsocketTransport):
    """Pipecat's FastAPI transport, which also cleans up its serializer when the session ends
    (Pipecat never does: a serializer holding a resource, like a decoding thread, would leak it),
    and whose input takes audio frames off its queue without a timer (`WebsocketAudioInput`)."""

    def __init__(self, websocket, params: FastAPIWebsocketParams, **kwargs):
        super().__init__(websocket, params, **kwargs)
        # In place of the input Pipecat's __init__ built, before anything has used it.
        self._input = WebsocketAudioInput(self, self._client, params, name=self._input_name)

    async def cleanup(self) -> None:
        await super().cleanup()
        if self._params.serializer is not None:
            await self._params.serializer.cleanup()


def websocket_transport(
    websocket: WebSocket,
    serializer: FrameSerializer,
    *,
    output_sample_rate: int,
    end_silence_secs: int = 2,
) -> FastAPIWebsocketTransport:
    """16 kHz audio in, `output_sample_rate` out, on a socket the route keeps (`HeldWebSocket`)."""
    return SessionWebsocketTransport(
        HeldWebSocket(websocket),
        FastAPIWebsocketParams(
            audio_in_enabled=True,
            audio_out_enabled=True,
            audio_out_sample_rate=output_sample_rate,
            audio_out_end_silence_secs=end_silence_secs,
            serializer=serializer,
        ),
    )
