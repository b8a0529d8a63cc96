"""The browser transport: Pipecat's protobuf frames over a FastAPI WebSocket, RTVI on.

This is the wire format of Pipecat's official clients (`@pipecat-ai/client-js` with
`@pipecat-ai/websocket-transport`), so those clients work against `/ws` unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import pipecat.frames.protobufs.frames_pb2 as frame_protos
from fastapi import WebSocket
from pipecat.frames.frames import (
    Frame,
    InputAudioRawFrame,
    InputTransportMessageFrame,
    OutputAudioRawFrame,
    OutputTransportMessageFrame,
    OutputTransportMessageUrgentFrame,
)
from pipecat.processors.frameworks.rtvi.models import MESSAGE_LABEL
from pipecat.serializers.protobuf import ProtobufFrameSerializer
from pipecat.transports.websocket.fastapi import FastAPIWebsocketTransport
from starlette.websockets import WebSocketDisconnect

from pipeline import metrics
from processors.frames import EndReason, PushToTalkFrame, SessionEndedMessageFrame, TurnMetricsMessageFrame
from transports.audio_budget import AudioBudget
from transports.websocket_session import close_with_reason, connected, websocket_transport

BROWSER_OUTPUT_SAMPLE_RATE = 24000
# Input audio is resampled to the pipeline's rate; a rate outside this range is not a microphone.
MIN_INPUT_SAMPLE_RATE, MAX_INPUT_SAMPLE_RATE = 8000, 48000
# After telling the page the session ended, how long it may take to play the rest of the
# goodbye and hang up itself (Pipecat's client reports a server-side close as a fatal error).
CLIENT_HANGUP_GRACE_SECS = 5.0
# A microphone chunk is a few kB (8 s of 16 kHz audio is 256 kB); bigger is not the page.
MAX_MESSAGE_BYTES = 256 * 1024
# RTVI client messages the page sends; the rest (`raw-audio`, `send-text`, `append-to-context`,
# `update-config`, …) would let a client put unchecked audio or text into the pipeline.
PAGE_RTVI_TYPES = {"client-ready", "disconnect-bot"}


def dropped(reason: str) -> None:
    return metrics.drop_client_input("/ws", reason)


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
        """Only what the page sends gets in: microphone audio (mono, 8-48 kHz, no faster than
        real time), the RTVI handshake, and push-to-talk (an RTVI client message `ptt`)."""
        if len(data) > MAX_MESSAGE_BYTES:
            return dropped("oversized")
        try:
            frame = await super().deserialize(data)
        except Exception:  # undecodable protobuf: not a frame of ours
            return dropped("malformed")
        if isinstance(frame, InputAudioRawFrame):
            if not (
                frame.num_channels == 1
                and MIN_INPUT_SAMPLE_RATE <= frame.sample_rate <= MAX_INPUT_SAMPLE_RATE
            ):
                return dropped("not_a_microphone")
            if not self._budget.allow(len(frame.audio) / 2 / frame.sample_rate):
                return dropped("ahead_of_real_time")
            return frame
        if isinstance(frame, InputTransportMessageFrame):
            return self._page_message(frame, self._budget.received_secs) or dropped("not_allowed")
        return dropped("not_allowed")  # text and transcription frames: the page never sends them

    @staticmethod
    def _page_message(frame: InputTransportMessageFrame, audio_secs: float) -> Frame | None:
        message = frame.message
        if not isinstance(message, dict) or message.get("label") != MESSAGE_LABEL:
            return None
        kind = message.get("type")
        if kind == "client-message":
            body = message.get("data")
            body = body if isinstance(body, dict) else {}
            active = (body.get("d") if isinstance(body.get("d"), dict) else {}).get("active")
            if body.get("t") == "ptt" and isinstance(active, bool):
                return PushToTalkFrame(active=active, after_audio_secs=audio_secs)
            return None
        return frame if kind in PAGE_RTVI_TYPES else None

    @staticmethod
    def _rtvi(message_type: str, data: dict) -> bytes:
        """An RTVI message; Pipecat clients surface `server-message` as `onServerMessage(data)`
        and `metrics` as `onMetrics(data)`."""
        proto = frame_protos.Frame()
        proto.message.data = json.dumps({"label": MESSAGE_LABEL, "type": message_type, "data": data})
        return proto.SerializeToString()


async def finish_browser_session(websocket: WebSocket, reason: EndReason) -> None:
    """After the pipeline: the page was told why (an RTVI server message after the goodbye
    audio) and hangs up itself once it has played the goodbye; Pipecat's client reports a
    server-side close as an error. Wait for that, bounded, then close with the reason."""
    with contextlib.suppress(TimeoutError, WebSocketDisconnect, RuntimeError):
        async with asyncio.timeout(CLIENT_HANGUP_GRACE_SECS):
            while connected(websocket):
                if (await websocket.receive())["type"] == "websocket.disconnect":
                    return
    await close_with_reason(websocket, reason)


def browser_transport(websocket: WebSocket) -> FastAPIWebsocketTransport:
    """A transport for one accepted browser WebSocket: 16 kHz PCM in, 24 kHz PCM out."""
    return websocket_transport(
        websocket, BrowserFrameSerializer(), output_sample_rate=BROWSER_OUTPUT_SAMPLE_RATE
    )
