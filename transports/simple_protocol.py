"""The simple WebSocket protocol: binary audio in any common format, JSON events, push-to-talk.

For clients that cannot run Pipecat's protobuf/RTVI client (mobile and mini-program apps,
devices, scripts). See the README for the message reference and an example exchange.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass

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

from processors.frames import (
    ClientHangupFrame,
    PushToTalkFrame,
    SessionEndedMessageFrame,
    TurnMetricsMessageFrame,
)
from transports.audio_budget import BURST_SECS, AudioBudget
from transports.audio_decoder import AudioBudgetExceeded, AudioDecodeError, ClientAudioDecoder

MAX_TEXT_CHARS = 4000
# A JSON command is a few dozen bytes; anything this large is refused before it is parsed.
MAX_JSON_BYTES = 64 * 1024
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


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

    Transcripts and bot speech events are translated from the RTVI messages every Pipecat
    worker already produces, so this protocol carries the same events as `/ws`.
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
        self._reply_text = ""  # LLM text of the reply in progress, sent sentence by sentence
        self._llm_said = ""  # recent LLM text already sent as bot_text (normalised)
        self._segments_seen: set = set()

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
            return PushToTalkFrame(active=active)
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
            return json.dumps({"type": "end", "reason": frame.reason})
        if isinstance(frame, TurnMetricsMessageFrame):
            return json.dumps({**frame.message, "type": "metrics"})
        if isinstance(frame, ClientReplyFrame):
            return json.dumps(frame.message)
        if isinstance(frame, OutputTransportMessageFrame | OutputTransportMessageUrgentFrame):
            return self._from_rtvi(frame.message)
        return None

    def _from_rtvi(self, message) -> str | None:
        """Translate the RTVI events this protocol carries; drop the rest."""
        if not isinstance(message, dict) or message.get("label") != MESSAGE_LABEL:
            return None
        event = self._event_from_rtvi(message.get("type"), message.get("data") or {})
        return json.dumps(event) if event else None

    def _event_from_rtvi(self, kind: str, data: dict) -> dict | None:
        if kind == "user-transcription":
            return {"type": "transcript", "text": data.get("text", ""), "final": bool(data.get("final"))}
        if kind == "bot-started-speaking":
            return {"type": "bot_started_speaking"}
        if kind == "bot-stopped-speaking":
            return {"type": "bot_stopped_speaking"}
        if kind == "error":
            return {"type": "error", "code": "service_error", "message": data.get("error", "")}
        if kind == "bot-llm-started":
            self._reply_text = ""
        elif kind == "bot-llm-text":
            self._reply_text += data.get("text", "")
            *sentences, self._reply_text = _SENTENCE_END.split(self._reply_text)
            return self._llm_bot_text(" ".join(s.strip() for s in sentences if s.strip()))
        elif kind == "bot-llm-stopped":
            rest, self._reply_text = self._reply_text.strip(), ""
            return self._llm_bot_text(rest)
        elif kind == "bot-output":
            return self._spoken_bot_text(data)
        return None

    def _llm_bot_text(self, text: str) -> dict | None:
        """LLM text goes out as it is generated, so it reaches the client even if TTS fails."""
        if not text:
            return None
        self._llm_said = (self._llm_said + " " + _normalise(text))[-4000:]
        return {"type": "bot_text", "text": text}

    def _spoken_bot_text(self, data: dict) -> dict | None:
        """Speech that did not come from the LLM (greeting, prompts, goodbye), once per segment."""
        segment = data.get("segment_id")
        text = (data.get("text") or "").strip()
        if not text or segment in self._segments_seen or _normalise(text) in self._llm_said:
            return None
        self._segments_seen.add(segment)
        return {"type": "bot_text", "text": text}
