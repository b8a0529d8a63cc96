"""Two differently configured bots on one running server, chosen per session on every transport,
and callers ending a conversation by saying goodbye (the LLM's `end_conversation` tool)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import urllib.request

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bots.call import SimpleClient
from tests.fakes.openai_server import LLMBehaviour
from tests.fakes.twilio import TwilioCaller
from tests.support.pipecat_client import PipecatWebsocketClient
from tests.support.server import PROJECT_ROOT, ServerProcess
from tests.support.speech import speech_pcm16

API_KEY = "bots-test-key"
AUTH_TOKEN = "twilio-test-token"
ACCOUNT_SID = "AC00000000000000000000000000000001"
SALES_NUMBER = "+15550002222"
# The turns the fake LLM answers with an end_conversation call, as a real one would judge them.
BOT_GOODBYE_TURN = r"^\W*(?:thanks|thank you)\W+bye\W*$"
REPLY = "Paris is the capital of France."  # the fake LLM's ordinary answer

PROFILES = f"""
default = "support"

[bots.support]
greeting = "Hello, support here."
goodbye = "Support says goodbye."
idle_timeout_secs = 1.5
silence_timeout_secs = 2
silence_prompts = []

[bots.sales]
greeting = "Hi, sales here."
goodbye = "Sales says bye."
tts_voice = "nova"
idle_timeout_secs = 30
silence_timeout_secs = 1.5
silence_prompts = [{{ after_secs = 1, say = "Still there?" }}]

[twilio.numbers]
"{SALES_NUMBER}" = "sales"
"""


@pytest.fixture(scope="module")
def bots_server(llm, twilio_api, tmp_path_factory):
    """A public server (credentials required) with the two bots; the LLM and the TTS are the
    OpenAI fake (its TTS records the voice), the STT is the offline one."""
    profiles = tmp_path_factory.mktemp("bots") / "bots.toml"
    profiles.write_text(PROFILES)
    env = {
        "VOICEBOT_PROFILES": str(profiles),
        "OPENAI_API_KEY": "test-key",
        "OPENAI_BASE_URL": llm.base_url,
        "VOICEBOT_STT_PROVIDER": "local",
        "VOICEBOT_API_KEYS": API_KEY,
        "VOICEBOT_MAX_SESSIONS": "10",
        "VOICEBOT_MAX_SESSIONS_PER_CLIENT": "0",
        "VOICEBOT_NEW_SESSIONS_PER_CLIENT_PER_MINUTE": "0",
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_API_BASE_URL": twilio_api.base_url,
    }
    server = ServerProcess(env=env, host="127.0.0.2").start()
    yield server
    server.stop()


@pytest.fixture
def clean_log(bots_server, llm):
    llm.behaviour = LLMBehaviour(tool_call="end_conversation", tool_call_when=BOT_GOODBYE_TURN)
    start = len(bots_server.log())
    yield
    assert bots_server.unclean_lines(start) == []


async def session_token(server: ServerProcess, body: dict | None) -> str:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{server.base_url}/session", json=body, headers={"Authorization": f"Bearer {API_KEY}"}
        ) as response,
    ):
        assert response.status == 200, await response.text()
        return (await response.json())["token"]


async def simple_session(server: ServerProcess, bot: str | None) -> SimpleClient:
    token = await session_token(server, {"bot": bot} if bot else None)
    query = f"bot={bot}&token={token}" if bot else f"token={token}"
    return SimpleClient(f"{server.ws_url}/ws/simple?{query}")


def bot_texts(client: SimpleClient) -> list[str]:
    return [event["text"] for event in client.of_type("bot_text")]


def voices_for(llm, text: str) -> set[str]:
    return {request.get("voice") for request in llm.speech_requests if request.get("input") == text}


def test_healthz_lists_the_bots(bots_server):
    with urllib.request.urlopen(f"{bots_server.base_url}/healthz") as response:
        health = json.load(response)
    assert (health["bots"], health["default_bot"]) == (["support", "sales"], "support")


async def test_each_bot_greets_in_its_voice_and_ends_on_its_own_timeouts(bots_server, llm, clean_log):
    # support: says nothing back and sends nothing -> its 1.5 s idle timeout, no prompt.
    async with await simple_session(bots_server, None) as support:
        await support.wait_closed(timeout=20)
    assert bot_texts(support) == ["Hello, support here.", "Support says goodbye."]
    assert support.of_type("end") == [{"type": "end", "reason": "idle_timeout"}]
    # sales: audio keeps flowing, nobody speaks -> its own prompt after 1 s, then its goodbye.
    async with await simple_session(bots_server, "sales") as sales:
        streamer = asyncio.create_task(sales.stream_pcm(bytes(2 * 16000 * 15)))
        await sales.wait_closed(timeout=20)
        streamer.cancel()
        await asyncio.gather(streamer, return_exceptions=True)
    assert bot_texts(sales) == ["Hi, sales here.", "Still there?", "Sales says bye."]
    assert sales.of_type("end") == [{"type": "end", "reason": "silence_timeout"}]
    assert voices_for(llm, "Hi, sales here.") == {"nova"}
    assert voices_for(llm, "Hello, support here.") == {"alloy"}  # the environment's voice


async def test_a_token_for_one_bot_cannot_open_another_and_unknown_bots_are_refused(bots_server, clean_log):
    token = await session_token(bots_server, {"bot": "sales"})
    for query in (f"bot=support&token={token}", f"token={token}"):  # the default is another bot
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"{bots_server.ws_url}/ws/simple?{query}"):
                pass
        assert refused.value.response.status_code == 401
    for path in ("/ws/simple", "/ws"):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(
                f"{bots_server.ws_url}{path}?bot=../sales", additional_headers={"X-API-Key": API_KEY}
            ):
                pass
        assert refused.value.response.status_code == 404
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with http.post(f"{bots_server.base_url}/session", json={"bot": "nobody"}, headers=headers) as r:
            assert r.status == 404
    # The refused attempts did not spend the token: it still opens its own bot.
    async with SimpleClient(f"{bots_server.ws_url}/ws/simple?bot=sales&token={token}") as client:
        await client.wait_for(lambda c: bot_texts(c), 20, "the greeting")
        await client.send_json({"type": "hangup"})
        await client.wait_closed(timeout=15)
    assert bot_texts(client)[0] == "Hi, sales here."


async def test_twilio_picks_the_bot_by_the_number_called(bots_server, llm, twilio_api, clean_log):
    calls = {}
    for name, number in (("sales", SALES_NUMBER), ("support", "+15550003333")):
        sid = {"sales": 1, "support": 2}[name]
        call = TwilioCaller(
            bots_server.base_url,
            AUTH_TOKEN,
            call_sid=f"CA{sid:032d}",
            stream_sid=f"MZ{sid:032d}",
            to_number=number,
        )
        async with call:
            await call.wait_closed(timeout=30)
        calls[name] = call
        assert call.parameters["voicebotBot"] == name
    # sales: its prompt, then its goodbye; support: no prompt, straight to its goodbye.
    assert (calls["sales"].close_code, calls["sales"].close_reason) == (1000, "silence_timeout")
    assert (calls["support"].close_code, calls["support"].close_reason) == (1000, "silence_timeout")
    assert voices_for(llm, "Still there?") == {"nova"} and voices_for(llm, "Sales says bye.") == {"nova"}
    assert voices_for(llm, "Support says goodbye.") == {"alloy"}
    hung_up = [h.call_sid for h in twilio_api.hang_ups]
    assert calls["sales"].call_sid in hung_up and calls["support"].call_sid in hung_up


async def test_saying_goodbye_ends_the_session_through_the_llm_tool(bots_server, llm, clean_log):
    async with await simple_session(bots_server, "sales") as client:
        await client.wait_for(lambda c: c.of_type("bot_stopped_speaking"), 20, "the greeting")
        await client.send_json({"type": "text", "text": "Say bye to my sister for me."})
        await client.wait_for(lambda c: REPLY in bot_texts(c), 20, "an ordinary answer")
        await client.wait_for(lambda c: len(c.of_type("bot_stopped_speaking")) >= 2, 20, "its end")
        assert client.close_code is None and not client.of_type("end")
        requests_before = len(llm.requests)
        await client.send_json({"type": "text", "text": "Thanks, bye!"})
        await client.wait_closed(timeout=20)
    request = llm.requests[requests_before]
    assert [tool["function"]["name"] for tool in request["tools"]] == ["end_conversation"]
    assert "end_conversation" in request["messages"][0]["content"]
    assert len(llm.requests) == requests_before + 1, "the tool's result does not run the LLM again"
    assert bot_texts(client) == ["Hi, sales here.", REPLY, "Sales says bye."]
    # The goodbye was played in full before the end notice (the fake TTS speaks 0.06 s a character).
    goodbye_started, ended = client.times("bot_started_speaking")[-1], client.times("end")[0]
    goodbye_audio = sum(len(chunk) for at, chunk in client.audio if goodbye_started <= at <= ended)
    assert goodbye_audio >= 0.9 * 0.06 * len("Sales says bye.") * 24000 * 2
    assert client.of_type("end") == [{"type": "end", "reason": "user_goodbye"}]
    assert (client.close_code, client.close_reason) == (1000, "user_goodbye")


async def test_one_goodbye_when_the_llm_already_said_farewell(bots_server, llm, clean_log):
    llm.behaviour = LLMBehaviour(tool_call="end_conversation", tool_reply="You're welcome, goodbye!")
    async with await simple_session(bots_server, "sales") as client:
        await client.wait_for(lambda c: c.of_type("bot_stopped_speaking"), 20, "the greeting")
        await client.send_json({"type": "text", "text": "That's all, thanks."})
        await client.wait_closed(timeout=20)
    assert bot_texts(client) == ["Hi, sales here.", "You're welcome, goodbye!"]
    assert client.of_type("end") == [{"type": "end", "reason": "user_goodbye"}]


async def test_a_spoken_goodbye_ends_a_browser_session_and_a_phone_call(bots_server, twilio_api, clean_log):
    bye = speech_pcm16("Thank you, bye!")
    async with PipecatWebsocketClient(
        f"{bots_server.ws_url}/ws?bot=sales", additional_headers={"X-API-Key": API_KEY}
    ) as browser:
        await browser.wait_for(lambda r: r.rtvi("bot-stopped-speaking"), 20, "the greeting")
        browser.say(bye)
        await browser.wait_closed(timeout=30)
    assert browser.received.server_messages()[-1]["reason"] == "user_goodbye"
    assert browser.received.bot_texts()[-1] == "Sales says bye."
    assert (browser.received.close_code, browser.received.close_reason) == (1000, "user_goodbye")

    call = TwilioCaller(bots_server.base_url, AUTH_TOKEN, call_sid=f"CA{3:032d}", stream_sid=f"MZ{3:032d}")
    async with call:
        await call.wait_for(lambda c: len(c.played_ulaw) > 8000 * 0.5, 20, "the greeting")
        call.say(bye)
        await call.wait_closed(timeout=30)
    assert (call.close_code, call.close_reason) == (1000, "user_goodbye")
    assert call.echoed_marks, "the goodbye was played before the hang-up"
    hang_up = next(h for h in twilio_api.hang_ups if h.call_sid == call.call_sid)
    assert hang_up.at >= call.echoed_marks[0][0]


def test_a_bad_profiles_file_stops_start_up_with_one_line(tmp_path):
    profiles = tmp_path / "bots.toml"
    profiles.write_text('default = "support"\n[bots.support]\ngreting = "Hello"\n')
    result = subprocess.run(
        [sys.executable, "-m", "bots.cli", "serve", "--port", "1"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PROJECT_ROOT), "VOICEBOT_PROFILES": str(profiles)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [f"voicebot: profiles file {profiles}: profile 'support': greting='Hello': unknown key"]


async def messages_until_closed(ws, timeout: float = 20) -> list[dict]:
    """Every JSON message the server sends until it closes the socket."""
    received = []

    async def read() -> None:
        with contextlib.suppress(ConnectionClosed):  # a 1008 close ends the iteration with it
            async for message in ws:
                if isinstance(message, str):
                    received.append(json.loads(message))

    await asyncio.wait_for(read(), timeout)
    return received


async def test_the_first_start_message_may_name_the_bot(bots_server, clean_log):
    url, key = f"{bots_server.ws_url}/ws/simple", {"X-API-Key": API_KEY}
    async with connect(url, additional_headers=key) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000, "bot": "sales"}))
        texts = []
        while "Hi, sales here." not in texts:
            message = await asyncio.wait_for(ws.recv(), 20)
            event = json.loads(message) if isinstance(message, str) else {}
            if event.get("type") == "bot_text":
                texts.append(event["text"])
        await ws.send(json.dumps({"type": "hangup"}))
        await messages_until_closed(ws)
    # Unknown, or not the bot the session token was minted for: an error, then a 1008 close.
    token = await session_token(bots_server, None)
    for connection, start, code in (
        (connect(url, additional_headers=key), {"type": "start", "bot": "nobody"}, "unknown_bot"),
        (connect(f"{url}?token={token}"), {"type": "start", "bot": "sales"}, "bot_not_allowed"),
    ):
        async with connection as ws:
            await ws.send(json.dumps(start))
            received = await messages_until_closed(ws)
        assert [m["code"] for m in received if m["type"] == "error"] == [code]
        assert not [m for m in received if m["type"] == "bot_text"], "no session was started"
        assert (ws.close_code, ws.close_reason) == (1008, code)
