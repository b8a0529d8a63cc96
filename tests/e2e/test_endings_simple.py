"""Endings on `/ws/simple` through the real server: what the client reads and hears last."""

from __future__ import annotations

import contextlib

import pytest
from websockets.exceptions import ConnectionClosed

from bots.call import SimpleClient
from tests.fakes.openai_server import LLMBehaviour
from tests.support.server import ServerProcess
from tests.support.speech import silence_pcm16, speech_pcm16

# Long enough for speech over it to be transcribed (an interruption) before it ends.
GOODBYE = "Thanks for talking with me today. It was a pleasure to help you. Have a wonderful day, goodbye!"
OUTPUT_RATE = 24000


@pytest.fixture(scope="module")
def server(llm):
    env = {
        "VOICEBOT_GREETING": "",
        "OPENAI_BASE_URL": llm.base_url,
        "VOICEBOT_GOODBYE": GOODBYE,
        "VOICEBOT_IDLE_TIMEOUT_SECS": "2",
        "VOICEBOT_SILENCE_TIMEOUT_SECS": "2",
        "VOICEBOT_SILENCE_PROMPTS": "0",
    }
    server = ServerProcess(env=env).start()
    yield server
    server.stop()


async def test_the_goodbye_is_sent_as_text_even_when_the_llm_said_the_same_words(server, llm):
    llm.behaviour = LLMBehaviour(reply=GOODBYE)  # the LLM says goodbye first, word for word
    start = len(server.log())
    async with SimpleClient(f"{server.ws_url}/ws/simple") as client:
        await client.send_json({"type": "text", "text": "I have to go now."})
        await client.wait_closed(timeout=40)  # the client sends nothing more: idle ends it
    # The reply sentence by sentence as generated, then the goodbye spoken at the end.
    *reply, last = [e["text"] for e in client.of_type("bot_text")]
    assert (" ".join(reply), len(reply), last) == (GOODBYE, 3, GOODBYE)
    assert client.events[-1][1] == {"type": "end", "reason": "idle_timeout"}
    assert (client.close_code, client.close_reason) == (1000, "idle_timeout")
    assert server.unclean_lines(start) == []


async def test_talking_over_the_goodbye_does_not_cut_it_off(server):
    start = len(server.log())
    async with SimpleClient(f"{server.ws_url}/ws/simple") as client:
        await client.wait_with_open_microphone(lambda c: c.of_type("bot_started_speaking"), 30, "the goodbye")
        goodbye_started = client.times("bot_started_speaking")[0]
        with contextlib.suppress(ConnectionClosed):  # the session may end while we talk
            await client.stream_pcm(speech_pcm16("Wait, wait, I am still here!") + silence_pcm16(2.0))
        await client.wait_closed(timeout=30)
    # Heard, maybe transcribed, but not answered: the goodbye is the last thing the bot says.
    assert [e["text"] for e in client.of_type("bot_text")] == [GOODBYE]
    assert len(client.of_type("bot_started_speaking")) == 1
    assert not [at for at in client.times("interruption") if at > goodbye_started]
    goodbye_audio = b"".join(chunk for at, chunk in client.audio if at >= goodbye_started).rstrip(b"\0")
    expected = speech_pcm16(GOODBYE, sample_rate=OUTPUT_RATE, pad_secs=0)
    assert len(goodbye_audio) >= 0.9 * len(expected), (len(goodbye_audio), len(expected))
    assert client.events[-1][1] == {"type": "end", "reason": "silence_timeout"}
    assert server.unclean_lines(start) == []
