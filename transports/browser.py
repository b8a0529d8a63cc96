"""The browser transport: Pipecat's protobuf frames over a FastAPI WebSocket, RTVI on.

This is the wire format of Pipecat's official clients (`@pipecat-ai/client-js` with
`@pipecat-ai/websocket-transport`), so those clients work against `/ws` unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pipecat.frames.protobufs.frames_pb2 as frame_protos
from fastapi import WebSocket
from pipecat.frames.frames import Frame, OutputTransportMessageFrame, OutputTransportMessageUrgentFrame
from pipecat.processors.frameworks.rtvi.models import MESSAGE_LABEL
from pipecat.serializers.protobuf import ProtobufFrameSerializer
from pipecat.transports.websocket.fastapi import FastAPIWebsocketTransport

from processors.frames import SessionEndedMessageFrame, TurnMetricsMessageFrame
from transports.websocket_session import websocket_transport

BROWSER_OUTPUT_SAMPLE_RATE = 24000


class BrowserFrameSerializer(ProtobufFrameSerializer):
    """Pipecat's protobuf serializer, minus its warning for every frame the wire has no slot for.

    The output transport hands every End/Cancel frame to the serializer; the stock one logs
    "Frame type EndFrame is not serializable" at each session end, which is noise, not news.
    """

    async def serialize(self, frame: Frame) -> str | bytes | None:
        if isinstance(frame, SessionEndedMessageFrame):
            return self._rtvi("server-message", frame.message)
        if isinstance(frame, TurnMetricsMessageFrame):
            return self._rtvi("metrics", {"turn": frame.message})
        messages = (OutputTransportMessageFrame, OutputTransportMessageUrgentFrame)
        if isinstance(frame, messages) or type(frame) in self.SERIALIZABLE_TYPES:
            return await super().serialize(frame)
        return None

    @staticmethod
    def _rtvi(message_type: str, data: dict) -> bytes:
        """An RTVI message; Pipecat clients surface `server-message` as `onServerMessage(data)`
        and `metrics` as `onMetrics(data)`."""
        proto = frame_protos.Frame()
        proto.message.data = json.dumps({"label": MESSAGE_LABEL, "type": message_type, "data": data})
        return proto.SerializeToString()


def browser_transport(
    websocket: WebSocket, close_reason: Callable[[], str | None]
) -> FastAPIWebsocketTransport:
    """A transport for one accepted browser WebSocket: 16 kHz PCM in, 24 kHz PCM out."""
    return websocket_transport(
        websocket,
        BrowserFrameSerializer(),
        output_sample_rate=BROWSER_OUTPUT_SAMPLE_RATE,
        close_reason=close_reason,
    )
