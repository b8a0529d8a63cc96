"""Production behaviour through the real server: admission control, graceful drain, metrics."""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.error
import urllib.request

import aiohttp
import pytest
from websockets.asyncio.client import connect

from bots.call import SimpleClient, poll_until
from tests.fakes.twilio import FakeTwilioAPI, TwilioCaller
from tests.support.pipecat_client import PipecatWebsocketClient
from tests.support.server import ServerProcess
from tests.support.speech import speech_pcm16

GOODBYE = "We are restarting now. Goodbye!"
BUSY_CALL = {"CallSid": "CA" + "9" * 32, "AccountSid": "AC" + "9" * 32}


def get(url: str) -> tuple[int, dict | str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read().decode()
            status = response.status
    except urllib.error.HTTPError as error:
        body, status = error.read().decode(), error.code
    try:
        return status, json.loads(body)
    except json.JSONDecodeError:
        return status, body


def readiness(server: ServerProcess) -> tuple[int, str]:
    status, body = get(f"{server.base_url}/readyz")
    return status, body["status"] if isinstance(body, dict) else body


async def test_a_full_server_refuses_with_1013_and_says_so_everywhere(llm):
    twilio = FakeTwilioAPI().start()
    server = ServerProcess(
        env={"VOICEBOT_GREETING": "", "OPENAI_BASE_URL": llm.base_url, "VOICEBOT_MAX_SESSIONS": "1"}
    ).start()
    try:
        assert get(f"{server.base_url}/readyz")[0] == 200
        async with PipecatWebsocketClient(f"{server.ws_url}/ws") as first:
            await first.wait_for(lambda r: r.rtvi("bot-ready"), 10, "the first session")
            status, body = get(f"{server.base_url}/readyz")
            assert (status, body["status"]) == (503, "full")
            for path in ("/ws", "/ws/simple"):
                async with connect(f"{server.ws_url}{path}") as refused:
                    await refused.wait_closed()
                assert (refused.close_code, refused.close_reason) == (1013, "server full")
            async with (
                aiohttp.ClientSession() as http,
                http.post(f"{server.base_url}/twilio/voice", data=BUSY_CALL) as response,
            ):
                twiml = await response.text()
            assert "<Say>" in twiml and "<Hangup/>" in twiml and "<Connect>" not in twiml
        # The first session ended: room again.
        await poll_until(lambda: readiness(server) == (200, "ready"), 10, "room for a session")
        status, text = get(f"{server.base_url}/metrics")
        assert 'voicebot_sessions_refused_total{transport="/ws"} 1.0' in text
        assert 'voicebot_sessions_ended_total{bot="default",reason="client_gone"} 1.0' in text
        assert server.unclean_lines() == []
    finally:
        server.stop()
        twilio.stop()


@pytest.mark.parametrize("workers", [1, 2])
async def test_sigterm_says_goodbye_to_every_caller_then_exits_cleanly(llm, workers):
    twilio = FakeTwilioAPI().start()
    env = {
        "VOICEBOT_GREETING": "",
        "OPENAI_BASE_URL": llm.base_url,
        "VOICEBOT_GOODBYE": GOODBYE,
        "VOICEBOT_MAX_SESSIONS": "4",  # three sessions at once: more than the offline stack's default
        "TWILIO_AUTH_TOKEN": "drain-token",
        "TWILIO_ACCOUNT_SID": "AC00000000000000000000000000000001",
        "TWILIO_API_BASE_URL": twilio.base_url,
    }
    server = ServerProcess(env=env, args=("--workers", str(workers))).start()
    try:
        async with (
            PipecatWebsocketClient(f"{server.ws_url}/ws") as browser,
            PipecatWebsocketClient(f"{server.ws_url}/ws") as second_browser,
            TwilioCaller(server.base_url, "drain-token") as phone,
        ):
            browsers = [browser, second_browser]
            for client in browsers:
                await client.wait_for(lambda r: r.rtvi("bot-ready"), 30, "the browser session")
            await asyncio.sleep(1)
            # One more client has just been told `ready` and not yet said a word: its session
            # is still opening when the drain starts, and is ended like the others.
            late = await SimpleClient(f"{server.ws_url}/ws/simple").__aenter__()
            await late.wait_for(lambda c: c.of_type("ready"), 10, "ready")
            server._process.send_signal(signal.SIGTERM)
            if workers == 1:  # with workers, which one answers /readyz is the kernel's choice
                await poll_until(lambda: readiness(server) == (503, "draining"), 10, "/readyz: draining")
            for client in browsers:
                await client.wait_closed(timeout=30)
            await phone.wait_closed(timeout=30)
            await late.wait_closed(timeout=30)
            await late.close()
        assert server._process.wait(timeout=30) == 0
    finally:
        server.stop()
        twilio.stop()
    for client in browsers:
        assert GOODBYE in client.received.bot_texts()
        assert client.received.server_messages()[-1]["reason"] == "server_shutdown"
        assert (client.received.close_code, client.received.close_reason) == (1000, "server_shutdown")
    assert [m["mark"]["name"] for m in phone.of_event("mark")] == ["voicebot-session-end"]
    assert [h.call_sid for h in twilio.hang_ups] == [phone.call_sid]
    assert late.events[-1][1] == {"type": "end", "reason": "server_shutdown"}
    assert server.log().count("ended: reason=server_shutdown") == 4
    assert server.unclean_lines() == []


async def test_turn_latency_reaches_the_metrics(llm):
    server = ServerProcess(env={"VOICEBOT_GREETING": "", "OPENAI_BASE_URL": llm.base_url}).start()
    try:
        async with PipecatWebsocketClient(f"{server.ws_url}/ws") as client:
            client.say(speech_pcm16("What is the capital of France?"))
            await client.wait_for(lambda r: any("turn" in m["data"] for m in r.rtvi("metrics")), 30, "a turn")
        _, text = get(f"{server.base_url}/metrics")
    finally:
        server.stop()
    assert 'voicebot_turn_latency_seconds_count{stage="voice_to_voice"} 1.0' in text
    assert "voicebot_active_sessions" in text
