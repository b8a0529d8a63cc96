"""Deepgram TTS: early flushes of a reply's first sentence stay within Deepgram's flush budget."""

from __future__ import annotations

import json
import random

from pipecat.frames.frames import TTSStoppedFrame
from pipecat.services.deepgram.tts import DeepgramTTSService
from websockets.protocol import State

from processors.deepgram_tts import FLUSH_LIMIT, FLUSH_WINDOW_SECS, SentenceFlushingDeepgramTTSService


class RecordingSocket:
    """Deepgram's TTS WebSocket as Pipecat's service sees it: open, and recording what is sent."""

    state = State.OPEN

    def __init__(self, clock: list[float]):
        self._clock = clock
        self.sent: list[tuple[float, str]] = []

    async def send(self, message: str) -> None:
        self.sent.append((self._clock[0], json.loads(message)["type"]))


def connected_service() -> tuple[SentenceFlushingDeepgramTTSService, RecordingSocket, list[float]]:
    clock = [0.0]
    tts = SentenceFlushingDeepgramTTSService(api_key="test-key", clock=lambda: clock[0])
    socket = RecordingSocket(clock)
    tts._websocket = socket  # the connection Pipecat's service would have opened
    return tts, socket, clock


async def speak_reply(tts: SentenceFlushingDeepgramTTSService, context_id: str) -> None:
    """One LLM reply as Pipecat drives the service: its first sentence, then the closing flush."""
    await tts.on_turn_context_created(context_id)
    async for _ in tts.run_tts("The weather is sunny today. ", context_id):
        pass
    await tts.flush_audio(context_id)


def busiest_minute(times: list[float]) -> int:
    within = (sum(1 for t in times if start <= t < start + FLUSH_WINDOW_SECS) for start in times)
    return max(within, default=0)


async def replies_at(moments: list[float]) -> tuple[list[bool], list[float]]:
    """Per reply: was it flushed early? And when every flush was sent."""
    tts, socket, clock = connected_service()
    early = []
    for n, moment in enumerate(moments):
        clock[0] = moment
        sent = len(socket.sent)
        await speak_reply(tts, f"reply-{n}")
        early.append([kind for _, kind in socket.sent[sent:]] == ["Speak", "Flush", "Flush"])
    return early, [at for at, kind in socket.sent if kind == "Flush"]


async def test_replies_a_natural_pace_apart_are_all_flushed_early():
    early, flushes = await replies_at([n * 8.0 for n in range(30)])
    assert all(early)
    assert busiest_minute(flushes) <= FLUSH_LIMIT


async def test_early_flushes_never_take_a_minute_past_deepgrams_limit():
    """Whatever the pace: only Pipecat's own closing flushes (one per reply) may exceed it."""
    rng = random.Random(17)
    for _ in range(40):
        moments, now = [], 0.0
        for _ in range(60):
            now += rng.choice([3.1, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0, 6.5, 8.0, 12.0, 20.0])
            moments.append(now)
        early, flushes = await replies_at(moments)
        assert busiest_minute(flushes) <= max(FLUSH_LIMIT, busiest_minute(moments)), moments
        assert any(early)


async def test_a_spoken_text_is_not_flushed_early():
    """Greetings and prompts (`TTSSpeakFrame`) are flushed whole by Pipecat: an early flush would
    only spend the budget. Only contexts opened outside a spoken text count as replies."""
    tts, socket, _ = connected_service()
    tts._speaking_text = True  # what process_frame sets while it handles a TTSSpeakFrame
    await tts.on_turn_context_created("greeting")
    tts._speaking_text = False
    async for _ in tts.run_tts("Hello! How can I help?", "greeting"):
        pass
    await tts.flush_audio("greeting")
    assert [kind for _, kind in socket.sent] == ["Speak", "Flush"]


async def test_after_a_reconnect_the_next_acknowledgement_closes_its_reply(monkeypatch):
    """A dropped connection never acknowledges the early flush it took: the new connection's first
    `Flushed` must close its reply (reach Pipecat), not be taken for that lost early one."""
    passed_on: list[str] = []

    async def pipecat_append(self, context_id, frame):
        passed_on.append(type(frame).__name__)

    monkeypatch.setattr(DeepgramTTSService, "append_to_audio_context", pipecat_append)
    tts, socket, _ = connected_service()
    await tts.on_turn_context_created("lost")
    async for _ in tts.run_tts("The weather is sunny today. ", "lost"):
        pass  # its early flush went out; the connection drops before any acknowledgement
    assert [kind for _, kind in socket.sent] == ["Speak", "Flush"]
    tts._websocket = RecordingSocket([0.0])  # Pipecat's reconnect
    await tts.flush_audio("next")  # a spoken text on the new connection, then its acknowledgement
    await tts.append_to_audio_context("next", TTSStoppedFrame(context_id="next"))
    assert passed_on == ["TTSStoppedFrame"]
