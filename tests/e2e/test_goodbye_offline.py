"""Saying goodbye on the embedded offline stack, whose LLM has no tool calling: the phrase
detector ends the session on a spoken closing, and leaves sentences that mention one alone."""

from __future__ import annotations

from bots.call import SimpleClient
from tests.fakes.twilio import TwilioCaller
from tests.support.pipecat_client import PipecatWebsocketClient
from tests.support.speech import silence_pcm16, speech_pcm16

GOODBYE = "Thanks for talking with me. Goodbye!"  # VOICEBOT_GOODBYE's default
BYE = "Thank you, bye!"


def finals(client: SimpleClient) -> list[str]:
    return [event["text"] for event in client.of_type("transcript") if event["final"]]


async def test_a_spoken_goodbye_ends_the_session_and_a_mention_does_not(offline_server):
    start = len(offline_server.log())
    async with SimpleClient(f"{offline_server.ws_url}/ws/simple") as client:
        await client.wait_with_open_microphone(
            lambda c: c.of_type("bot_stopped_speaking"), 30, "the greeting"
        )

        await client.stream_pcm(speech_pcm16("Say bye to my sister for me.") + silence_pcm16(1.0))
        await client.wait_for(lambda c: len(c.of_type("bot_stopped_speaking")) >= 2, 40, "an answer")
        assert client.close_code is None and not client.of_type("end"), finals(client)

        await client.stream_pcm(speech_pcm16(BYE) + silence_pcm16(1.0))
        await client.wait_closed(timeout=40)
    said = [event["text"] for event in client.of_type("bot_text")]
    assert said[-1] == GOODBYE, said
    assert client.of_type("end") == [{"type": "end", "reason": "user_goodbye"}]
    assert (client.close_code, client.close_reason) == (1000, "user_goodbye")
    # The goodbye was heard in full: its audio arrived between its start and the end notice.
    goodbye_started, ended = client.times("bot_started_speaking")[-1], client.times("end")[0]
    goodbye_audio = sum(len(chunk) for at, chunk in client.audio if goodbye_started <= at <= ended)
    assert goodbye_audio / (24000 * 2) > 1.5, "Piper says the goodbye in about two seconds"
    # The closing itself was never answered by the LLM.
    assert "the user said goodbye" in offline_server.log()[start:]
    assert offline_server.unclean_lines(start) == []


async def test_a_spoken_goodbye_ends_a_browser_session_and_a_phone_call(offline_server):
    start = len(offline_server.log())
    async with PipecatWebsocketClient(f"{offline_server.ws_url}/ws") as browser:
        await browser.wait_for(lambda r: r.rtvi("bot-stopped-speaking"), 30, "the greeting")
        browser.say(speech_pcm16(BYE))
        await browser.wait_closed(timeout=40)
    assert browser.received.server_messages()[-1]["reason"] == "user_goodbye"
    assert browser.received.bot_texts()[-1] == GOODBYE
    assert (browser.received.close_code, browser.received.close_reason) == (1000, "user_goodbye")

    # A private server without TWILIO_AUTH_TOKEN takes unsigned calls; the closed stream ends them.
    call = TwilioCaller(offline_server.base_url, "unused", call_sid=f"CA{7:032d}", stream_sid=f"MZ{7:032d}")
    async with call:
        await call.wait_for(lambda c: len(c.played_ulaw) > 8000 * 0.5, 30, "the greeting")
        call.say(speech_pcm16(BYE))
        await call.wait_closed(timeout=40)
    assert (call.close_code, call.close_reason) == (1000, "user_goodbye")
    assert [name for _, name in call.echoed_marks] == ["voicebot-session-end"], "goodbye played, then the end"
    assert offline_server.unclean_lines(start) == []
