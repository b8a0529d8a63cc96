"""Random and malformed input from many connections, while a good session runs beside them."""

from __future__ import annotations

import asyncio
import json
import random

import psutil
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bots.call import SimpleClient
from tests.support.audio_files import encode
from tests.support.server import ServerProcess
from tests.support.speech import speech_pcm16

REPLY = "Paris is the capital of France."
ROUNDS, CONNECTIONS_PER_ROUND = 8, 20


def slope(samples: list[float]) -> float:
    """The least-squares growth per sample."""
    n = len(samples)
    mean_x, mean_y = (n - 1) / 2, sum(samples) / n
    covariance = sum((x - mean_x) * (y - mean_y) for x, y in enumerate(samples))
    return covariance / sum((x - mean_x) ** 2 for x in range(n))


def twilio_nonsense(rng: random.Random) -> list[str | bytes]:
    """Twilio events out of order, with fields missing or of the wrong type."""
    sid = {"streamSid": "MZ1"}
    return rng.sample(
        [
            json.dumps({"event": "media", **sid, "media": {"payload": "!!not base64!!"}}),
            json.dumps({"event": "start", "start": {}}),
            json.dumps({"event": "start", "start": {"streamSid": 7, "callSid": None}}),
            json.dumps({"event": "stop"}),
            json.dumps({"event": "mark", "mark": "oops"}),
            json.dumps({"event": "dtmf", "dtmf": {"digit": "xyz"}}),
            json.dumps([1, 2, 3]),
            "{broken",
            rng.randbytes(300),
        ],
        k=5,
    )


def simple_nonsense(rng: random.Random) -> list[str | bytes]:
    return [
        rng.randbytes(rng.randint(1, 5000)),
        b"RIFF" + rng.randbytes(2000),
        b"\x1a\x45\xdf\xa3" + rng.randbytes(3000),
        "{not json",
        json.dumps({"type": "ptt", "active": [1]}),
        json.dumps({"type": "start", "sample_rate": "fast"}),
        json.dumps({"type": "text", "text": "x" * 10000}),
        json.dumps({"type": 5}),
        json.dumps({"nothing": True}),
        "null",
    ]


async def throw(url: str, messages: list[str | bytes]) -> None:
    try:
        async with connect(url, max_size=None, open_timeout=10) as ws:
            for message in messages:
                await ws.send(message)
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.3)
    except (ConnectionClosed, InvalidStatus, OSError, TimeoutError):
        pass  # being thrown out is a fine answer to garbage


async def fuzz_round(server: ServerProcess, rng: random.Random, connections: int) -> None:
    jobs = []
    for _ in range(connections):
        kind = rng.choice(["ws", "simple", "twilio", "huge"])
        if kind == "ws":
            jobs.append(throw(f"{server.ws_url}/ws", [rng.randbytes(rng.randint(1, 4000)) for _ in range(5)]))
        elif kind == "simple":
            jobs.append(throw(f"{server.ws_url}/ws/simple", simple_nonsense(rng)))
        elif kind == "twilio":
            jobs.append(throw(f"{server.ws_url}/twilio/ws", twilio_nonsense(rng)))
        else:
            jobs.append(
                throw(f"{server.ws_url}/ws/simple", [bytes(2 * 2**20)])
            )  # over VOICEBOT_MAX_MESSAGE_BYTES
    await asyncio.gather(*jobs)


async def test_garbage_never_hurts_the_server_or_a_good_session(llm):
    env = {
        "VOICEBOT_GREETING": "",
        "OPENAI_BASE_URL": llm.base_url,
        "VOICEBOT_MAX_MESSAGE_BYTES": str(1024 * 1024),
        "VOICEBOT_MAX_SESSIONS": "100",
        "VOICEBOT_LOG_LEVEL": "INFO",
    }
    server = ServerProcess(env=env).start()
    rng = random.Random(20261122)
    try:
        process = psutil.Process(server._process.pid)
        await fuzz_round(server, rng, connections=30)  # warm-up: lazy imports, first sessions
        rss_before = process.memory_info().rss
        async with SimpleClient(f"{server.ws_url}/ws/simple") as good:
            fuzzing = asyncio.gather(*(fuzz_round(server, rng, connections=20) for _ in range(3)))
            await good.send_bytes(encode(speech_pcm16("What is the capital of France?"), "mp3"))
            await good.wait_for(lambda c: c.of_type("bot_text"), 60, "the good session's answer")
            await fuzzing
            await good.send_json({"type": "hangup"})
            await good.wait_closed(timeout=15)
        # A leak grows with every round; the heap also swings by ±15 MB from round to round, so
        # the trend over several identical rounds is what is compared, not two samples.
        samples = []
        for _ in range(ROUNDS):
            await fuzz_round(server, rng, connections=CONNECTIONS_PER_ROUND)
            await asyncio.sleep(1)
            samples.append(process.memory_info().rss / 2**20)
        growth_per_connection = slope(samples) / CONNECTIONS_PER_ROUND
        print(
            f"RSS: {rss_before / 2**20:.0f} MB after warm-up, then {[round(mb) for mb in samples]} MB: "
            f"{growth_per_connection * 1000:+.0f} kB per garbage connection"
        )
        with __import__("urllib.request").request.urlopen(
            f"{server.base_url}/healthz", timeout=5
        ) as response:
            health = json.load(response)
    finally:
        server.stop()
    assert good.of_type("bot_text")[0]["text"] == REPLY
    assert good.of_type("end") == [{"type": "end", "reason": "client_hangup"}]
    assert health["status"] == "ok" and health["active_sessions"] == 0, "every fuzz session ended"
    assert growth_per_connection < 0.4, f"memory grows by {growth_per_connection:.2f} MB per connection"
    assert [line for line in server.unclean_lines() if "Traceback" in line] == []
