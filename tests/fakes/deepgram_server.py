"""A local server speaking Deepgram's live STT (`/v1/listen`) and Aura TTS (`/v1/speak`) protocols.

Pipecat's `DeepgramSTTService` (through the real `deepgram-sdk`) and `DeepgramTTSService` talk to
it unchanged via `base_url`. Recognition is real: the audio received since the last final result
is transcribed with the offline Moonshine model, so a test can tell a complete utterance from one
that lost audio. Message shapes follow Deepgram's API reference (see anchors.md §5).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlparse

import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response

from tests.fakes.background_loop import BackgroundServer
from tests.fakes.openai_server import tone_pcm16

SPEECH_RMS = 300  # 16-bit RMS above which a 20 ms window counts as speech


@dataclass
class DeepgramBehaviour:
    """Faults to inject; tests change these between turns."""

    api_key: str = "test-key"  # anything else is rejected with HTTP 401 at the handshake
    drop_listen_after_speech_secs: float | None = None  # close 1011 mid-utterance, once
    reconnect_gate: threading.Event | None = None  # after that drop, hold new handshakes until set
    fail_next_speaks: int = 0  # close the TTS socket with 1011 on this many next Speak messages
    tts_seconds_per_char: float = 0.05
    # Service timing (0 = answer at once). Interim results come every this much audio while the
    # user speaks (with `interim_results=true`, Pipecat's default).
    interim_every_secs: float = 1.0
    final_delay_secs: float = 0.0  # Finalize → its final result
    tts_first_byte_secs: float = 0.0  # Flush → the first audio of that text
    # What a final says and when (speculative replies): hold each Finalize's final until the
    # gate is set; repeat the latest interim word for word; or say `final_text` instead.
    final_gate: threading.Event | None = None
    final_repeats_interim: bool = False
    final_text: str | None = None


@dataclass
class ListenLog:
    """What one `/v1/listen` connection received."""

    query: dict[str, str]
    audio_bytes: int = 0
    audio_messages: int = 0
    messages: list[str] = field(default_factory=list)
    audio_bytes_at: list[int] = field(default_factory=list)  # audio received before each message
    transcripts: list[str] = field(default_factory=list)
    interims: list[str] = field(default_factory=list)
    finals_sent_at: list[float] = field(default_factory=list)  # time.monotonic(), per final


class FakeDeepgramServer(BackgroundServer):
    def __init__(self, transcriber, behaviour: DeepgramBehaviour | None = None):
        super().__init__()
        self.behaviour = behaviour or DeepgramBehaviour()
        self.base_url = f"ws://127.0.0.1:{self.port}"
        self.listens: list[ListenLog] = []
        self.speak_texts: list[str] = []
        self.rejected = 0
        self._transcriber = transcriber

    @property
    def behaviour(self) -> DeepgramBehaviour:
        return self._behaviour

    @behaviour.setter
    def behaviour(self, behaviour: DeepgramBehaviour) -> None:
        """New behaviours (one per test) may drop a connection again."""
        self._behaviour = behaviour
        self._dropped_once = False

    async def serve(self):
        server = await serve(
            self._route,
            "127.0.0.1",
            self.port,
            process_request=self._authorise,
            compression=None,
            max_size=None,
        )

        async def shutdown() -> None:
            server.close()
            await server.wait_closed()

        return shutdown

    async def _authorise(self, connection: ServerConnection, request) -> Response | None:
        gate = self.behaviour.reconnect_gate
        while self._dropped_once and gate is not None and not gate.is_set():
            await asyncio.sleep(0.01)
        if request.headers.get("Authorization") != f"Token {self.behaviour.api_key}":
            self.rejected += 1
            body = json.dumps({"err_code": "INVALID_AUTH", "err_msg": "Invalid credentials."}).encode()
            return Response(401, "Unauthorized", Headers({"Content-Type": "application/json"}), body)
        return None

    async def _route(self, connection: ServerConnection) -> None:
        path = urlparse(connection.request.path).path
        try:
            if path == "/v1/listen":
                await self._listen(connection)
            elif path == "/v1/speak":
                await self._speak(connection)
            else:
                await connection.close(1008, "unknown path")
        except ConnectionClosed:
            pass

    # --- /v1/listen -------------------------------------------------------------------------

    async def _listen(self, ws: ServerConnection) -> None:
        query = {k: v[-1] for k, v in parse_qs(urlparse(ws.request.path).query).items()}
        log = ListenLog(query=query)
        self.listens.append(log)

        # Messages leave in order through an outbox, so a final held by `final_gate` holds back
        # what follows it while audio is still read and transcribed in real time.
        outbox: asyncio.Queue[tuple[str, bool, bool]] = asyncio.Queue()

        async def send(message: str, *, final: bool = False, held: bool = False) -> None:
            await outbox.put((message, final, held))

        async def sender() -> None:
            closed = False  # then keep taking messages, so that outbox.join() (at CloseStream) returns
            while True:
                message, final, held = await outbox.get()
                gate = self.behaviour.final_gate
                while held and gate is not None and not gate.is_set() and not closed:
                    await asyncio.sleep(0.01)
                try:
                    if not closed:
                        await ws.send(message)
                        if final:
                            log.finals_sent_at.append(time.monotonic())
                except ConnectionClosed:
                    closed = True
                finally:
                    outbox.task_done()

        sending = asyncio.create_task(sender())
        try:
            await self._listen_loop(ws, query, log, send, outbox)
        finally:
            sending.cancel()

    async def _listen_loop(
        self,
        ws: ServerConnection,
        query: dict[str, str],
        log: ListenLog,
        send: Callable[..., Awaitable[None]],
        outbox: asyncio.Queue,
    ) -> None:
        rate = int(query.get("sample_rate", "16000"))
        request_id = str(uuid.uuid4())
        pending = bytearray()  # audio since the last final result
        offset = 0.0  # seconds of audio finalised so far
        speech_secs = 0.0
        in_speech = False
        interim_mark = 0
        # Interims are transcribed beside the loop, as the service does, so a Finalize is answered
        # at once; one begun before a final is dropped (it would come after the final).
        segment = 0  # finals sent so far
        last_interim: str | None = None  # this segment's
        interim: asyncio.Task | None = None

        async def transcribe_interim(audio: bytes, of_segment: int) -> None:
            nonlocal last_interim
            text = await self._transcriber.transcribe(audio)
            if of_segment == segment:
                last_interim = text
                log.interims.append(text)
                await results(text, final=False)

        async def results(text: str, *, final: bool, from_finalize: bool = False) -> None:
            duration = len(pending) / 2 / rate
            words = text.split()
            step = duration / max(len(words), 1)
            word_items = [
                {
                    "word": word.lower().strip(".,?!"),
                    "start": offset + i * step,
                    "end": offset + (i + 1) * step,
                    "confidence": 0.98,
                    "punctuated_word": word,
                }
                for i, word in enumerate(words)
            ]
            model_info = {"name": query.get("model", "nova-3"), "version": "fake", "arch": "fake"}
            message = {
                "type": "Results",
                "channel_index": [0, 1],
                "duration": duration,
                "start": offset,
                "is_final": final,
                "speech_final": final,
                "from_finalize": from_finalize,
                "channel": {"alternatives": [{"transcript": text, "confidence": 0.98, "words": word_items}]},
                "metadata": {
                    "request_id": request_id,
                    "model_uuid": str(uuid.uuid4()),
                    "model_info": model_info,
                },
            }
            await send(json.dumps(message), final=final, held=from_finalize)

        async for message in ws:
            if isinstance(message, bytes):
                log.audio_bytes += len(message)
                log.audio_messages += 1
                pending.extend(message)
                speechy = _rms(message) > SPEECH_RMS
                if speechy:
                    speech_secs += len(message) / 2 / rate
                if speechy and not in_speech and query.get("vad_events") == "true":
                    await send(json.dumps({"type": "SpeechStarted", "channel": [0, 1], "timestamp": offset}))
                in_speech = in_speech or speechy
                drop_after = self.behaviour.drop_listen_after_speech_secs
                if drop_after is not None and not self._dropped_once and speech_secs >= drop_after:
                    self._dropped_once = True
                    await ws.close(1011, "fake: dropped mid-utterance")
                    return
                if (
                    query.get("interim_results") == "true"
                    and in_speech
                    and len(pending) - interim_mark >= int(self.behaviour.interim_every_secs * 2 * rate)
                ):
                    interim_mark = len(pending)
                    if interim is None or interim.done():
                        interim = asyncio.create_task(transcribe_interim(bytes(pending), segment))
                continue
            kind = json.loads(message).get("type")
            log.messages.append(kind)
            log.audio_bytes_at.append(log.audio_bytes)
            if kind in ("Finalize", "CloseStream"):
                segment += 1
                text = await self._final_text(bytes(pending), last_interim) if in_speech else ""
                last_interim = None
                log.transcripts.append(text)
                if self.behaviour.final_delay_secs:
                    await asyncio.sleep(self.behaviour.final_delay_secs)
                await results(text, final=True, from_finalize=kind == "Finalize")
                if query.get("utterance_end_ms") and text:
                    end = {"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": offset}
                    await send(json.dumps(end))
                offset += len(pending) / 2 / rate
                pending.clear()
                interim_mark = 0
                in_speech = False
            if kind == "CloseStream":
                await outbox.join()
                await ws.send(json.dumps({
                    "type": "Metadata", "transaction_key": "deprecated", "request_id": request_id,
                    "sha256": "0" * 64, "created": time.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                    "duration": offset, "channels": 1,
                }))  # fmt: skip
                await ws.close(1000)
                return

    async def _final_text(self, pending: bytes, last_interim: str | None) -> str:
        """The final for `pending`: transcribed, unless the behaviour says what it is."""
        if self.behaviour.final_text is not None:
            return self.behaviour.final_text
        if self.behaviour.final_repeats_interim and last_interim is not None:
            return last_interim
        return await self._transcriber.transcribe(pending)

    # --- /v1/speak --------------------------------------------------------------------------

    async def _speak(self, ws: ServerConnection) -> None:
        query = {k: v[-1] for k, v in parse_qs(urlparse(ws.request.path).query).items()}
        rate = int(query.get("sample_rate", "24000"))
        await ws.send(json.dumps({
            "type": "Metadata", "request_id": str(uuid.uuid4()), "model_name": query.get("model", "aura"),
            "model_version": "fake", "model_uuid": str(uuid.uuid4()),
        }))  # fmt: skip
        text = ""
        sequence = 0
        async for message in ws:
            data = json.loads(message)
            kind = data.get("type")
            if kind == "Speak":
                if self.behaviour.fail_next_speaks > 0:
                    self.behaviour.fail_next_speaks -= 1
                    await ws.close(1011, "fake: synthesis failed")
                    return
                text += data.get("text", "")
            elif kind == "Flush":
                if text:
                    self.speak_texts.append(text)
                    if self.behaviour.tts_first_byte_secs:
                        await asyncio.sleep(self.behaviour.tts_first_byte_secs)
                    audio = tone_pcm16(self.behaviour.tts_seconds_per_char * len(text), rate)
                    for start in range(0, len(audio), rate // 5):  # 100 ms chunks
                        await ws.send(audio[start : start + rate // 5])
                        await asyncio.sleep(0)
                text = ""
                await ws.send(json.dumps({"type": "Flushed", "sequence_id": sequence}))
                sequence += 1
            elif kind == "Clear":
                text = ""
                await ws.send(json.dumps({"type": "Cleared", "sequence_id": sequence}))
            elif kind == "Close":
                await ws.close(1000)
                return


def _rms(pcm16: bytes) -> float:
    samples = np.frombuffer(pcm16[: len(pcm16) // 2 * 2], dtype=np.int16).astype(np.float32)
    return float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0
