"""Phone calls through the real server: a Twilio-protocol caller, a fake Twilio REST API."""

from __future__ import annotations

import audioop
import xml.etree.ElementTree as ET

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.fakes.openai_server import LLMBehaviour
from tests.fakes.twilio import TwilioCaller, signed_form_post
from tests.support.server import ServerProcess
from tests.support.speech import speech_pcm16, word_error_rate

AUTH_TOKEN = "twilio-test-token"
ACCOUNT_SID = "AC00000000000000000000000000000001"
QUESTION = "What is the capital of France?"
REPLY = "Paris is the capital of France."
GOODBYE = "Thanks for calling. Goodbye!"


@pytest.fixture(scope="module")
def phone_server(twilio_api, llm):
    env = {
        "BOT_GREETING": "",  # an old name: still read, with a warning (test below)
        "OPENAI_BASE_URL": llm.base_url,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_API_BASE_URL": twilio_api.base_url,
        "VOICEBOT_GOODBYE": GOODBYE,
        "VOICEBOT_SILENCE_TIMEOUT_SECS": "2",
        "VOICEBOT_SILENCE_PROMPTS": "1",
    }
    server = ServerProcess(env=env).start()
    yield server
    server.stop()


@pytest.fixture
def call(phone_server, llm, request):
    """A fresh call with its own CallSid; the log from here must stay clean."""
    llm.behaviour = LLMBehaviour(reply=REPLY)
    number = abs(hash(request.node.name)) % 10**30
    start = len(phone_server.log())
    caller = TwilioCaller(
        phone_server.base_url, AUTH_TOKEN, call_sid=f"CA{number:032d}", stream_sid=f"MZ{number:032d}"
    )
    yield caller
    session = phone_server.session_of_call(caller.call_sid, start=start)
    phone_server.wait_for_log(rf"Session {session} ended", start=start)
    assert phone_server.unclean_lines(start) == []


def seconds(ulaw: bytes) -> float:
    return len(ulaw) / 8000


async def test_the_webhook_answers_with_a_media_stream_and_no_pause(phone_server, call):
    twiml = await call.dial()
    root = ET.fromstring(twiml)
    assert [child.tag for child in root] == ["Connect"]  # nothing after <Connect>: no <Pause>
    assert call.stream_url == f"ws://127.0.0.1:{phone_server.port}/twilio/ws"
    details = {name: value for name, value in call.parameters.items() if name != "voicebotTicket"}
    assert call.parameters["voicebotTicket"], "the stream is bound to this call (and bot) by a signed ticket"
    assert details == {
        "from": call.from_number,
        "to": call.to_number,
        "callSid": call.call_sid,
        "voicebotBot": "default",
    }
    await call.connect()
    await call.hang_up()


async def test_a_spoken_question_is_answered_on_the_stream(call, llm):
    async with call:
        call.say(speech_pcm16(QUESTION))
        await call.wait_for(lambda c: seconds(c.played_ulaw) > 1.0, 30, "the answer's audio")
        await call.hang_up()
    assert {m["streamSid"] for m in call.of_event("media")} == {call.stream_sid}
    heard = audioop.ulaw2lin(bytes(call.played_ulaw), 2)
    assert audioop.rms(heard, 2) > 300, "the answer is speech, not silence"
    assert word_error_rate(QUESTION, llm.requests[-1]["messages"][-1]["content"]) <= 0.25


async def test_silence_prompts_then_the_goodbye_is_heard_before_the_hang_up(call, twilio_api):
    hang_ups_before = len(twilio_api.hang_ups)
    async with call:
        await call.wait_closed(timeout=40)
    # The goodbye audio arrived, then the end mark; the caller "played" it and echoed the mark;
    # only then did the server hang up through the REST API and close the stream.
    marks = call.of_event("mark")
    assert [m["mark"]["name"] for m in marks] == ["voicebot-session-end"]
    assert call.times("media")[-1] < call.times("mark")[0]
    assert call.echoed_marks, "the stream was closed before the caller had played the goodbye"
    echoed_at = call.echoed_marks[0][0]
    hang_ups = twilio_api.hang_ups[hang_ups_before:]
    assert len(hang_ups) == 1
    hang_up = hang_ups[0]
    assert (hang_up.account_sid, hang_up.call_sid, hang_up.form) == (
        ACCOUNT_SID,
        call.call_sid,
        {"Status": "completed"},
    )
    assert hang_up.authorization.startswith("Basic ")
    assert hang_up.at >= echoed_at
    assert (call.close_code, call.close_reason) == (1000, "silence_timeout")
    assert seconds(call.played_ulaw) > 2.0  # the prompt and the goodbye were both sent


async def test_garbage_while_the_goodbye_plays_still_ends_with_the_hang_up(call, twilio_api):
    """After the end mark the server reads the stream itself; a binary frame or junk there is
    skipped, not a crash that would leave the call up."""
    hang_ups_before = len(twilio_api.hang_ups)
    async with call:
        await call.wait_for(lambda c: c.of_event("mark"), 40, "the end mark")
        await call.send_raw(b"\x00\x01 not twilio")
        await call.send_raw("{not json")
        await call.wait_closed(timeout=40)
    assert [h.call_sid for h in twilio_api.hang_ups[hang_ups_before:]] == [call.call_sid]
    assert call.echoed_marks and twilio_api.hang_ups[-1].at >= call.echoed_marks[0][0]
    assert (call.close_code, call.close_reason) == (1000, "silence_timeout")


async def test_the_caller_hanging_up_mid_reply_ends_cleanly_without_a_rest_call(
    call, twilio_api, llm, phone_server
):
    llm.behaviour = LLMBehaviour(reply="Paris is the capital of France. " * 6)
    hang_ups_before = len(twilio_api.hang_ups)
    async with call:
        call.say(speech_pcm16(QUESTION))
        await call.wait_for(lambda c: seconds(c.played_ulaw) > 0.5, 30, "the reply to start")
        await call.hang_up()
    session = phone_server.session_of_call(call.call_sid)
    phone_server.wait_for_log(rf"Session {session} ended: reason=client_hangup")
    assert twilio_api.hang_ups[hang_ups_before:] == []


async def test_barge_in_clears_the_callers_audio(call, llm):
    llm.behaviour = LLMBehaviour(reply="Paris is the capital of France, a city of art and light. " * 4)
    async with call:
        call.say(speech_pcm16(QUESTION))
        await call.wait_for(lambda c: seconds(c.played_ulaw) > 1.0, 30, "the long reply to start")
        call.say(speech_pcm16("Sorry, stop, I have another question."))
        await call.wait_for(lambda c: c.of_event("clear"), 20, "a clear event")
        await call.hang_up()
    assert call.of_event("clear")[0]["streamSid"] == call.stream_sid


async def test_bad_signatures_are_refused_on_the_webhook_and_the_stream(phone_server):
    url = f"{phone_server.base_url}/twilio/voice"
    body, headers = signed_form_post(url, {"CallSid": "CA1", "From": "+1", "To": "+2"}, "wrong-token")
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=body, headers=headers) as response:
            assert response.status == 403
        async with http.post(url, data=body, headers={"Content-Type": headers["Content-Type"]}) as response:
            assert response.status == 403  # no signature at all
    stream = f"{phone_server.ws_url}/twilio/ws"
    for signature in ("bogus", None):
        headers = {"X-Twilio-Signature": signature} if signature else {}
        with pytest.raises(InvalidStatus) as refused:
            async with connect(stream, additional_headers=headers):
                pass
        assert refused.value.response.status_code == 403


def test_an_old_setting_name_still_works_with_one_warning_line(phone_server):
    lines = [line for line in phone_server.log().splitlines() if "BOT_GREETING is deprecated" in line]
    assert len(lines) == 1 and "use VOICEBOT_GREETING" in lines[0]
