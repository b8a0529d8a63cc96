"""The simple WebSocket protocol: binary audio in any common format, JSON events, push-to-talk.

For clients that cannot run Pipecat's protobuf/RTVI client (mobile and mini-program apps,
devices, scripts). See the README for the message reference and an example exchange.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass

from fastapi import WebSocket
from loguru import logger
from pipecat.frames.frames import (
    Frame,
    InputAudioRawFrame,
    InterruptionFrame,
    LLMMessagesAppendFrame,
    OutputAudioRawFrame,
    OutputTransportMessageFrame,
    OutputTransportMessageUrgentFrame,
)
from pipecat.processors.frameworks.rtvi.models import MESSAGE_LABEL
from pipecat.serializers.base_serializer import FrameSerializer
from starlette.websockets import WebSocketDisconnect

from processors.frames import (
    BotTextMessageFrame,
    ClientHangupFrame,
    EndReason,
    PushToTalkFrame,
    SessionEndedMessageFrame,
    TurnMetricsMessageFrame,
    UserTranscriptMessageFrame,
)
from transports.audio_budget import BURST_SECS, AudioBudget
from transports.audio_decoder import AudioBudgetExceeded, AudioDecodeError, ClientAudioDecoder
from transports.websocket_session import close_with_reason, connected

MAX_TEXT_CHARS = 4000
# A JSON command is a few dozen bytes; anything this large is refused before it is parsed.
MAX_JSON_BYTES = 64 * 1024


@dataclass
class ClientReplyFrame(OutputTransportMessageUrgentFrame):
    """A JSON message for the client produced while reading its input (an error, a new `ready`)."""


def _error(code: str, message: str) -> ClientReplyFrame:
    return ClientReplyFrame(message={"type": "error", "code": code, "message": message})


class SimpleProtocolSerializer(FrameSerializer):
    """Client → server: binary audio (raw PCM or a container, detected from the bytes) and JSON
    `start`, `ptt`, `text`, `hangup`. Server → client: binary PCM s16le at the output rate and
    JSON `ready`, `transcript`, `bot_text`, `bot_started_speaking`, `bot_stopped_speaking`,
    `interruption`, `metrics`, `error` (non-fatal) and last `end`.

    Each frame maps to one event: transcripts and bot text come as typed frames shaped once by
    `ConversationTextFrames`; bot speech and service errors from the RTVI messages every Pipecat
    worker produces.
    """

    def __init__(
        self,
        *,
        session_id: str,
        input_sample_rate: int = 16000,
        output_sample_rate: int = 24000,
        bot_name: str = "",
    ):
        super().__init__()
        self.session_id = session_id
        self.bot_name = bot_name  # the session's bot: a `start` naming another one is an error
        self.output_sample_rate = output_sample_rate
        self._pipeline_rate = input_sample_rate
        self._decoder = ClientAudioDecoder(target_rate=input_sample_rate)
        self._budget = AudioBudget()

    def ready_message(self) -> str:
        return json.dumps(
            {
                "type": "ready",
                "session_id": self.session_id,
                "input_sample_rate": self._decoder.pcm_rate,
                "output_sample_rate": self.output_sample_rate,
            }
        )

    # --- client → server -------------------------------------------------------------------

    async def deserialize(self, data: str | bytes) -> Frame | None:
        if isinstance(data, bytes):
            return await self._audio(data)
        if len(data) > MAX_JSON_BYTES or len(data.encode()) > MAX_JSON_BYTES:
            return _error("message_too_large", f"a JSON message may be at most {MAX_JSON_BYTES} bytes")
        try:
            message = json.loads(data)
        except json.JSONDecodeError as e:
            return _error("bad_json", f"not JSON: {e.msg} at position {e.pos}")
        except RecursionError:  # "[[[[…": nested deeper than the parser will go
            return _error("bad_json", "not JSON: nested too deeply")
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            return _error("bad_message", 'a message must be a JSON object with a string "type"')
        return self._command(message)

    async def _audio(self, data: bytes) -> Frame | None:
        # Decoding stops as soon as the audio passes what the budget still allows.
        max_samples = int(self._budget.remaining() * self._pipeline_rate)
        try:
            pcm = await asyncio.to_thread(self._decoder.decode, data, max_samples)
        except AudioBudgetExceeded as e:
            return _error("audio_too_fast", f"{e} (at most {BURST_SECS:g}s ahead; nothing of it was used)")
        except AudioDecodeError as e:
            return _error("bad_audio", str(e))
        if not pcm:
            return None
        if not self._budget.allow(len(pcm) / 2 / self._pipeline_rate):
            return _error(
                "audio_too_fast", f"audio is arriving faster than real time (over {BURST_SECS:g}s ahead)"
            )
        return InputAudioRawFrame(audio=pcm, sample_rate=self._pipeline_rate, num_channels=1)

    async def cleanup(self) -> None:
        """The session is over: stop the decoder's stream thread, if one is open."""
        await super().cleanup()
        kind = await asyncio.to_thread(self._decoder.close)
        if kind:
            logger.debug(f"Session {self.session_id}: closed its open {kind} audio stream")

    def _command(self, message: dict) -> Frame | None:
        kind = message["type"]
        if kind == "start":
            if "bot" in message and message["bot"] != self.bot_name:
                return _error(
                    "bad_message",
                    "start.bot names another bot: choose it with ?bot= or in the first message",
                )
            rate = message.get("sample_rate", self._pipeline_rate)
            if not isinstance(rate, int) or isinstance(rate, bool):
                return _error("bad_message", "start.sample_rate must be an integer")
            try:
                self._decoder.set_pcm_rate(rate)
            except AudioDecodeError as e:
                return _error("bad_message", str(e))
            return ClientReplyFrame(message=json.loads(self.ready_message()))
        if kind == "ptt":
            active = message.get("active")
            if not isinstance(active, bool):
                return _error("bad_message", "ptt.active must be true or false")
            return PushToTalkFrame(active=active, after_audio_secs=self._budget.received_secs)
        if kind == "text":
            text = message.get("text")
            if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT_CHARS:
                return _error(
                    "bad_message",
                    f"text.text must be a non-empty string of at most {MAX_TEXT_CHARS} characters",
                )
            return LLMMessagesAppendFrame(messages=[{"role": "user", "content": text.strip()}], run_llm=True)
        if kind == "hangup":
            return ClientHangupFrame()
        return _error("unknown_type", f"unknown message type {kind!r}; expected start, ptt, text or hangup")

    # --- server → client -------------------------------------------------------------------

    async def serialize(self, frame: Frame) -> str | bytes | None:
        if isinstance(frame, OutputAudioRawFrame):
            return frame.audio
        if isinstance(frame, InterruptionFrame):
            return json.dumps({"type": "interruption"})
        if isinstance(frame, SessionEndedMessageFrame):
            return None  # `end` is sent by `finish_simple_session`, after everything else
        if isinstance(frame, TurnMetricsMessageFrame):
            return json.dumps({**frame.message, "type": "metrics"})
        if isinstance(frame, BotTextMessageFrame):
            return json.dumps({"type": "bot_text", "text": frame.text})
        if isinstance(frame, UserTranscriptMessageFrame):
            return json.dumps({**frame.message, "type": "transcript"})
        if isinstance(frame, ClientReplyFrame):
            return json.dumps(frame.message)
        if isinstance(frame, OutputTransportMessageFrame | OutputTransportMessageUrgentFrame):
            return self._from_rtvi(frame.message)
        return None

    @staticmethod
    def _from_rtvi(message) -> str | None:
        """The RTVI events this protocol carries, one event each; the rest are dropped."""
        if not isinstance(message, dict) or message.get("label") != MESSAGE_LABEL:
            return None
        kind, data = message.get("type"), message.get("data") or {}
        if kind == "bot-started-speaking":
            return json.dumps({"type": "bot_started_speaking"})
        if kind == "bot-stopped-speaking":
            return json.dumps({"type": "bot_stopped_speaking"})
        if kind == "error":
            return json.dumps({"type": "error", "code": "service_error", "message": data.get("error", "")})
        return None


async def finish_simple_session(websocket: WebSocket, reason: EndReason) -> None:
    """After the pipeline: `end` with the reason as the very last message, then the close."""
    if connected(websocket):
        with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
            await websocket.send_text(json.dumps({"type": "end", "reason": str(reason)}))
    await close_with_reason(websocket, reason)
