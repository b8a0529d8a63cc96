"""The browser transport: Pipecat's protobuf frames over a FastAPI WebSocket, RTVI on.

This is the wire format of Pipecat's official clients (`@pipecat-ai/client-js` with
`@pipecat-ai/websocket-transport`), so those clients work against `/ws` unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

import pipecat.frames.protobufs.frames_pb2 as frame_protos
from fastapi import WebSocket
from pipecat.frames.frames import (
    Frame,
    InputAudioRawFrame,
    OutputAudioRawFrame,
    OutputTransportMessageFrame,
    OutputTransportMessageUrgentFrame,
)
from pipecat.processors.frameworks.rtvi.models import MESSAGE_LABEL
from pipecat.serializers.protobuf import ProtobufFrameSerializer
from pipecat.transports.websocket.fastapi import FastAPIWebsocketTransport
from starlette.websockets import WebSocketDisconnect, WebSocketState

from processors.frames import PushToTalkFrame, SessionEndedMessageFrame, TurnMetricsMessageFrame
from transports.audio_budget import AudioBudget
from transports.websocket_session import websocket_transport

BROWSER_OUTPUT_SAMPLE_RATE = 24000
# Input audio is resampled to the pipeline's rate; a rate outside this range is not a microphone.
MIN_INPUT_SAMPLE_RATE, MAX_INPUT_SAMPLE_RATE = 8000, 48000
# After telling the page the session ended, how long it may take to play the rest of the
# goodbye and hang up itself (Pipecat's client reports a server-side close as a fatal error).
CLIENT_HANGUP_GRACE_SECS = 5.0


class BrowserFrameSerializer(ProtobufFrameSerializer):
    """Pipecat's protobuf serializer speaking exactly what the official JS client understands.

    `@pipecat-ai/websocket-transport` decodes only `audio` and `message` frames: everything else
    (e.g. `interruption`) makes it log "Unknown frame kind", so only those two go out. Barge-in
    reaches the client as RTVI `user-started-speaking`, on which it stops its player at once.
    Our own messages (session end, turn metrics) go out as RTVI messages; push-to-talk comes in
    as an RTVI client message.
    """

    async def serialize(self, frame: Frame) -> str | bytes | None:
        if isinstance(frame, SessionEndedMessageFrame):
            return self._rtvi("server-message", frame.message)
        if isinstance(frame, TurnMetricsMessageFrame):
            return self._rtvi("metrics", {"turn": frame.message})
        if isinstance(
            frame, OutputTransportMessageFrame | OutputTransportMessageUrgentFrame | OutputAudioRawFrame
        ):
            return await super().serialize(frame)
        return None

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._budget = AudioBudget()

    async def deserialize(self, data: str | bytes) -> Frame | None:
        """The page's push-to-talk button arrives as an RTVI client message `ptt`; audio far
        ahead of real time (a flood, not a microphone) is dropped."""
        try:
            frame = await super().deserialize(data)
        except Exception:  # undecodable protobuf: not a frame of ours
            return None
        if isinstance(frame, InputAudioRawFrame) and not (
            frame.num_channels == 1
            and MIN_INPUT_SAMPLE_RATE <= frame.sample_rate <= MAX_INPUT_SAMPLE_RATE
            and self._budget.allow(len(frame.audio) / 2 / frame.sample_rate)
        ):
            return None  # mono PCM at a microphone's rate, no faster than real time, or nothing
        message = getattr(frame, "message", None)
        if (
            isinstance(message, dict)
            and message.get("label") == MESSAGE_LABEL
            and message.get("type") == "client-message"
        ):
            body = message.get("data") or {}
            if body.get("t") == "ptt" and isinstance((body.get("d") or {}).get("active"), bool):
                return PushToTalkFrame(active=body["d"]["active"])
        return frame

    @staticmethod
    def _rtvi(message_type: str, data: dict) -> bytes:
        """An RTVI message; Pipecat clients surface `server-message` as `onServerMessage(data)`
        and `metrics` as `onMetrics(data)`."""
        proto = frame_protos.Frame()
        proto.message.data = json.dumps({"label": MESSAGE_LABEL, "type": message_type, "data": data})
        return proto.SerializeToString()


async def let_the_client_hang_up(websocket: WebSocket) -> None:
    """Give the client the first word on closing: it hangs up once it has played the goodbye."""
    with contextlib.suppress(TimeoutError, WebSocketDisconnect, RuntimeError):
        async with asyncio.timeout(CLIENT_HANGUP_GRACE_SECS):
            while websocket.client_state == WebSocketState.CONNECTED:
                if (await websocket.receive())["type"] == "websocket.disconnect":
                    return


def browser_transport(
    websocket: WebSocket, close_reason: Callable[[], str | None]
) -> FastAPIWebsocketTransport:
    """A transport for one accepted browser WebSocket: 16 kHz PCM in, 24 kHz PCM out."""
    return websocket_transport(
        websocket,
        BrowserFrameSerializer(),
        output_sample_rate=BROWSER_OUTPUT_SAMPLE_RATE,
        close_reason=close_reason,
        before_close=let_the_client_hang_up,
        before_close_secs=CLIENT_HANGUP_GRACE_SECS,
    )
