"""The browser transport: Pipecat's protobuf frames over a FastAPI WebSocket, RTVI on.

This is the wire format of Pipecat's official clients (`@pipecat-ai/client-js` with
`@pipecat-ai/websocket-transport`), so those clients work against `/ws` unchanged.
"""

from __future__ import annotations

from fastapi import WebSocket
from pipecat.frames.frames import Frame, OutputTransportMessageFrame, OutputTransportMessageUrgentFrame
from pipecat.serializers.protobuf import ProtobufFrameSerializer
from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams, FastAPIWebsocketTransport

BROWSER_OUTPUT_SAMPLE_RATE = 24000


class BrowserFrameSerializer(ProtobufFrameSerializer):
    """Pipecat's protobuf serializer, minus its warning for every frame the wire has no slot for.

    The output transport hands every End/Cancel frame to the serializer; the stock one logs
    "Frame type EndFrame is not serializable" at each session end, which is noise, not news.
    """

    async def serialize(self, frame: Frame) -> str | bytes | None:
        messages = (OutputTransportMessageFrame, OutputTransportMessageUrgentFrame)
        if isinstance(frame, messages) or type(frame) in self.SERIALIZABLE_TYPES:
            return await super().serialize(frame)
        return None


def browser_transport(websocket: WebSocket) -> FastAPIWebsocketTransport:
    """A transport for one accepted browser WebSocket: 16 kHz PCM in, 24 kHz PCM out."""
    return FastAPIWebsocketTransport(
        websocket,
        FastAPIWebsocketParams(
            audio_in_enabled=True,
            audio_out_enabled=True,
            audio_out_sample_rate=BROWSER_OUTPUT_SAMPLE_RATE,
            serializer=BrowserFrameSerializer(),
        ),
    )
