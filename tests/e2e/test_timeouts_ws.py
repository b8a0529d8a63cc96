"""Idle, silence and max-duration endings through the real server over `/ws`.

Each asserts what a user notices: the goodbye is heard (in full), the client is told the one
reason before the close, the close carries it, and the log is clean. Order, not timing.
"""

from __future__ import annotations

import pytest

from tests.fakes.openai_server import FakeOpenAIServer, LLMBehaviour
from tests.support.pipecat_client import PipecatWebsocketClient
from tests.support.server import ServerProcess
from tests.support.speech import speech_pcm16

GOODBYE = "Thanks for talking with me. Goodbye!"
PROMPT = "Are you still there?"
OUTPUT_RATE = 24000


@pytest.fixture
def start_server():
    servers: list[ServerProcess] = []

    def start(**env: str) -> ServerProcess:
        base = {"VOICEBOT_GREETING": "", "VOICEBOT_GOODBYE": GOODBYE, "VOICEBOT_SILENCE_PROMPT": PROMPT}
        server = ServerProcess(env={**base, **env}).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def assert_ended_cleanly(server: ServerProcess, client: PipecatWebsocketClient, reason: str) -> None:
    """The client was told the reason last, the socket closed 1000 with it, one log line, no noise."""
    notice = client.received.server_messages()[-1]
    assert (notice["type"], notice["reason"]) == ("session-ended", reason)
    assert notice["detail"], "the reason in words, for the page"
    assert (client.received.close_code, client.received.close_reason) == (1000, reason)
    ended = server.wait_for_log(r"Session \w+ ended: reason=(\w+)")
    assert ended.group(1) == reason
    assert server.log().count(" ended: reason=") == 1
    assert server.unclean_lines() == []


async def test_idle_ends_a_session_whose_client_stops_sending(start_server):
    server = start_server(VOICEBOT_IDLE_TIMEOUT_SECS="2", VOICEBOT_SILENCE_TIMEOUT_SECS="0")
    async with PipecatWebsocketClient(f"{server.ws_url}/ws", stream_silence=False) as client:
        await client.wait_closed(timeout=30)
    assert client.received.bot_texts() == [GOODBYE]
    assert_ended_cleanly(server, client, "idle_timeout")


async def test_idle_never_fires_while_a_slow_llm_answers_a_recording(start_server):
    """A client sends one recording and waits; the LLM's first token comes later than the
    hand-over (6 s) and the idle timeout (3 s) together, so only tracking the LLM keeps the
    idle clock from firing."""
    llm = FakeOpenAIServer(
        LLMBehaviour(reply="Paris is the capital of France.", first_token_delay=12.0)
    ).start()
    try:
        server = start_server(
            OPENAI_BASE_URL=llm.base_url,
            VOICEBOT_LLM_STALL_SECS="30",  # slow, not stalled
            VOICEBOT_IDLE_TIMEOUT_SECS="3",
            VOICEBOT_SILENCE_TIMEOUT_SECS="0",
        )
        async with PipecatWebsocketClient(f"{server.ws_url}/ws", stream_silence=False) as client:
            client.say(speech_pcm16("What is the capital of France?"))
            await client.wait_closed(timeout=60)
    finally:
        llm.stop()
    assert len(llm.requests) == 1
    # The answer was spoken in full, and only then did the idle clock run out.
    assert client.received.bot_texts() == ["Paris is the capital of France.", GOODBYE]
    received = client.received
    assert received.times("user-transcription")[0] < received.times("bot-started-speaking")[0]
    assert_ended_cleanly(server, client, "idle_timeout")


async def test_silence_prompts_then_says_goodbye_in_full(start_server):
    server = start_server(
        VOICEBOT_IDLE_TIMEOUT_SECS="30", VOICEBOT_SILENCE_TIMEOUT_SECS="2", VOICEBOT_SILENCE_PROMPTS="1"
    )
    async with PipecatWebsocketClient(f"{server.ws_url}/ws") as client:
        await client.wait_closed(timeout=40)
    received = client.received
    assert received.bot_texts() == [PROMPT, GOODBYE]

    # Everything the bot sent after the prompt finished is the goodbye (plus trailing silence):
    # it must be at least as long as the goodbye itself, i.e. not cut off by the end.
    after_prompt = received.times("bot-stopped-speaking")[0]
    goodbye_audio = received.audio_between(after_prompt).rstrip(b"\0")
    expected = speech_pcm16(GOODBYE, sample_rate=OUTPUT_RATE, pad_secs=0)
    assert len(goodbye_audio) >= 0.9 * len(expected), (len(goodbye_audio), len(expected))
    assert_ended_cleanly(server, client, "silence_timeout")


async def test_user_speech_after_the_prompt_resets_the_escalation(start_server):
    llm = FakeOpenAIServer(LLMBehaviour(reply="Good to hear from you.")).start()
    try:
        server = start_server(
            OPENAI_BASE_URL=llm.base_url,
            VOICEBOT_IDLE_TIMEOUT_SECS="30",
            VOICEBOT_SILENCE_TIMEOUT_SECS="2",
            VOICEBOT_SILENCE_PROMPTS="1",
        )
        async with PipecatWebsocketClient(f"{server.ws_url}/ws") as client:
            await client.wait_for(lambda r: PROMPT in r.bot_texts(), 20, "the first prompt")
            client.say(speech_pcm16("Yes, I am still here."))
            await client.wait_closed(timeout=60)
    finally:
        llm.stop()
    # Speaking after the first prompt earned a second prompt before the goodbye.
    assert client.received.bot_texts() == [PROMPT, "Good to hear from you.", PROMPT, GOODBYE]
    assert_ended_cleanly(server, client, "silence_timeout")


async def test_max_duration_ends_with_its_reason(start_server):
    server = start_server(
        VOICEBOT_GREETING="Hello! How can I help you today?",
        VOICEBOT_MAX_SESSION_SECS="4",
        VOICEBOT_IDLE_TIMEOUT_SECS="0",
        VOICEBOT_SILENCE_TIMEOUT_SECS="0",
    )
    async with PipecatWebsocketClient(f"{server.ws_url}/ws") as client:
        await client.wait_closed(timeout=30)
    assert client.received.bot_texts()[-1] == GOODBYE
    assert_ended_cleanly(server, client, "max_duration")
