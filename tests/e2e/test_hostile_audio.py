"""Hostile input on `/ws/simple`, against the real server over real sockets (issue 14, items 4
and 5): a decompression bomb, a long stream followed by tiny messages, raw PCM after a
container, an oversized JSON message; and beside each, the legitimate client doing the same
thing right, which still works."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import urllib.request

import pytest

from bots.call import SimpleClient
from tests.fakes.deepgram_server import FakeDeepgramServer
from tests.support.audio_files import encode, flac_silence, media_recorder_webm, without_last_ogg_page
from tests.support.server import ServerProcess, fake_services_env
from tests.support.speech import silence_pcm16, speech_pcm16

QUESTION = "What is the capital of France?"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class RecordingTranscriber:
    """Stands in for speech recognition: keeps every utterance it is given, and any speech is
    the question. A test then checks the very audio that reached the STT."""

    def __init__(self) -> None:
        self.utterances: list[bytes] = []

    async def transcribe(self, pcm16: bytes) -> str:
        self.utterances.append(pcm16)
        return QUESTION if pcm16 else ""


@pytest.fixture(scope="module")
def transcriber():
    return RecordingTranscriber()


@pytest.fixture(scope="module")
def server(llm, transcriber):
    """The cheapest stack that runs the whole path: Deepgram and OpenAI fakes (no local models)."""
    deepgram = FakeDeepgramServer(transcriber).start()
    quiet = {
        "VOICEBOT_GREETING": "",
        "VOICEBOT_SILENCE_TIMEOUT_SECS": "0",
        "VOICEBOT_IDLE_TIMEOUT_SECS": "60",
    }
    server = ServerProcess(env={**quiet, **fake_services_env(deepgram.base_url, llm.base_url)}).start()
    yield server
    server.stop()
    deepgram.stop()


async def answered(client: SimpleClient) -> None:
    """The user's turn was transcribed and the bot replied."""
    await client.wait_for(lambda c: c.of_type("bot_text"), 40, "the reply")
    assert QUESTION in [e["text"] for e in client.of_type("transcript") if e["final"]]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def cpu_secs(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


class Watch(threading.Thread):
    """Polls `/healthz` (each answer's latency) and the server's RSS until stopped."""

    def __init__(self, server: ServerProcess):
        super().__init__(daemon=True)
        self._server = server
        self._stopping = threading.Event()
        self.latencies: list[float] = []
        self.peak_rss_mb = rss_mb(server.pid)

    def run(self) -> None:
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                with urllib.request.urlopen(f"{self._server.base_url}/healthz", timeout=5) as response:
                    response.read()
                self.latencies.append(time.monotonic() - started)
            except OSError:
                self.latencies.append(float("inf"))
            self.peak_rss_mb = max(self.peak_rss_mb, rss_mb(self._server.pid))
            self._stopping.wait(0.05)

    def stop(self) -> None:
        self._stopping.set()
        self.join()


async def processed(client: SimpleClient) -> None:
    """Wait until the server has handled every message sent so far (they are handled in order:
    an unknown command's error comes back after all of them)."""
    count = len(client.of_type("error"))
    await client.send_json({"type": "ping"})
    await client.wait_for(
        lambda c: any(e["code"] == "unknown_type" for e in c.of_type("error")[count:]), 30, "the probe"
    )


async def hang_up(client: SimpleClient) -> None:
    await client.send_json({"type": "hangup"})
    await client.wait_closed(timeout=15)
    assert client.of_type("end")[-1] == {"type": "end", "reason": "client_hangup"}


async def test_a_flac_bomb_is_refused_without_the_server_growing_or_stalling(server):
    """Two hours of silence in 33 kB of FLAC, five times: decoding stops at the real-time budget
    (120 s) each time; it used to decode everything first, with copies (~0.5 GB a message)."""
    bomb = flac_silence(2 * 3600)
    start = len(server.log())
    async with SimpleClient(f"{server.ws_url}/ws/simple") as client:
        await client.send_bytes(encode(speech_pcm16("Hello."), "flac"))  # warm the decoding path
        await processed(client)
        baseline = rss_mb(server.pid)
        watch = Watch(server)
        watch.start()
        try:
            for _ in range(5):
                await client.send_bytes(bomb)
            await processed(client)
        finally:
            watch.stop()
        growth = watch.peak_rss_mb - baseline
        slowest = max(watch.latencies)
        print(f"5 FLAC bombs ({len(bomb)} B each): RSS growth {growth:.1f} MB, /healthz max {slowest:.3f}s")
        assert growth < 100, growth
        assert slowest < 0.5, watch.latencies
        errors = [e for e in client.of_type("error") if e["code"] != "unknown_type"]
        assert [e["code"] for e in errors] == ["audio_too_fast"] * 5
        assert "may still get ahead of real time" in errors[0]["message"], errors
        # The session goes on, and other callers are served.
        async with SimpleClient(f"{server.ws_url}/ws/simple") as other:
            await other.wait_for(lambda c: c.of_type("ready"), 10, "ready")
            await hang_up(other)
        await hang_up(client)
    assert server.unclean_lines(start) == []


async def tiny_messages_after(server: ServerProcess, stream: bytes) -> tuple[SimpleClient, float]:
    """Send `stream`, then 30 one-byte messages continuing it: the server's CPU for those 30."""
    async with SimpleClient(f"{server.ws_url}/ws/simple") as client:
        await client.send_bytes(stream)
        await processed(client)
        cpu = cpu_secs(server.pid)
        for _ in range(30):
            await client.send_bytes(b"\x00")
        await processed(client)
        cost = cpu_secs(server.pid) - cpu
        await hang_up(client)
    return client, cost


async def test_tiny_messages_after_a_long_stream_cost_no_cpu(server):
    """A 10-minute Ogg/Opus stream (no end page), then 30 one-byte messages continuing it: each
    used to decode the whole stream again from its first byte."""
    stream = without_last_ogg_page(encode(silence_pcm16(600.0), "ogg"))
    start = len(server.log())
    client, cost = await tiny_messages_after(server, stream)
    assert client.of_type("error")[0]["code"] == "audio_too_fast"
    print(f"30 one-byte messages after a 10-minute Ogg stream ({len(stream)} B): {cost:.2f}s server CPU")
    assert cost < 1.0, cost
    assert server.unclean_lines(start) == []


async def test_a_stream_within_the_budget_is_decoded_once(server):
    """The same, legitimately: 100 s of Ogg (within the budget) then 30 one-byte messages."""
    stream = without_last_ogg_page(encode(silence_pcm16(100.0), "ogg"))
    client, cost = await tiny_messages_after(server, stream)
    assert [e["code"] for e in client.of_type("error")] == ["unknown_type"] * 2
    print(f"30 one-byte messages after 100 s of Ogg: {cost:.2f}s server CPU")
    assert cost < 0.5, cost


RECORDINGS = {
    "media_recorder_webm": media_recorder_webm,
    "ogg_without_end": lambda pcm: without_last_ogg_page(encode(pcm, "ogg")),
    "mp3": lambda pcm: encode(pcm, "mp3"),
}


@pytest.mark.parametrize("recording", list(RECORDINGS))
async def test_raw_pcm_after_a_container_stream_is_heard(server, transcriber, recording):
    """An app sends a recording or a recorder's stream (neither an MP3 nor a recorder's stream
    has an end marker), then streams raw PCM: the PCM reaches the STT byte for byte (it used to
    be appended to the container and lost)."""
    silence = silence_pcm16(1.0)
    container = RECORDINGS[recording](silence)
    speech = speech_pcm16(QUESTION)
    start = len(server.log())
    async with SimpleClient(f"{server.ws_url}/ws/simple") as client:
        await client.send_bytes(container)
        await client.stream_pcm(speech + silence_pcm16(0.6), speed=2.0)
        await answered(client)
        await hang_up(client)
    middle = speech[len(speech) // 2 - 8000 : len(speech) // 2 + 8000]  # 0.5 s, frame-aligned
    assert any(middle in utterance for utterance in transcriber.utterances)
    assert client.of_type("error") == []
    assert server.unclean_lines(start) == []


@pytest.mark.parametrize("fmt", ["media_recorder_webm", "ogg"])
async def test_recorder_chunks_streamed_in_real_time_are_recognised(server, transcriber, fmt):
    """A MediaRecorder in 250 ms chunks, the header only in the first; the stream thread
    is closed with the session."""
    pcm = speech_pcm16(QUESTION) + silence_pcm16(0.6)
    recording = media_recorder_webm(pcm) if fmt == "media_recorder_webm" else encode(pcm, "ogg")
    step = max(1, int(len(recording) * 0.25 / (len(pcm) / 32000)))
    start = len(server.log())
    async with SimpleClient(f"{server.ws_url}/ws/simple") as client:
        for at in range(0, len(recording), step):
            await client.send_bytes(recording[at : at + step])
            await asyncio.sleep(0.25)
        await answered(client)
        await hang_up(client)
    if fmt == "media_recorder_webm":  # never ends by itself: the session's end closes it
        server.wait_for_log(r"closed its open webm audio stream", start=start)
    assert server.unclean_lines(start) == []


async def test_a_whole_60s_mp3_is_answered(server):
    """A minute-long recording in one message is within the budget: decoded and answered."""
    speech = speech_pcm16(QUESTION)
    pcm = speech + silence_pcm16(60.0 - len(speech) / 32000)
    async with SimpleClient(f"{server.ws_url}/ws/simple") as client:
        await client.send_bytes(encode(pcm, "mp3"))
        await answered(client)
        await hang_up(client)
    assert client.of_type("error") == []  # 60 s is within the 120 s the budget allows at once


async def test_an_oversized_json_message_is_refused_unparsed(server):
    start = len(server.log())
    async with SimpleClient(f"{server.ws_url}/ws/simple") as client:
        await client.send_text_frame(json.dumps({"type": "text", "text": "a" * 1_000_000}))
        await client.send_text_frame(json.dumps({"type": "start", "padding": "x" * 60_000}))  # under
        await client.wait_for(lambda c: len(c.of_type("ready")) == 2, 10, "the second ready")
        [error] = client.of_type("error")
        assert error["code"] == "message_too_large" and "65536 bytes" in error["message"], error
        await hang_up(client)
    assert server.unclean_lines(start) == []
