"""Production services (Deepgram STT/TTS, OpenAI LLM) through the real server and the real SDKs,
against local fakes that speak their wire protocols, including their failures."""

from __future__ import annotations

import asyncio
import threading

import pytest

from tests.fakes.deepgram_server import DeepgramBehaviour
from tests.fakes.openai_server import LLMBehaviour
from tests.support.pipecat_client import PipecatWebsocketClient, llm_text
from tests.support.server import ServerProcess
from tests.support.speech import speech_pcm16, word_error_rate, words

QUESTION = "What is the capital of France?"
FOLLOW_UP = "And what about Spain?"
APOLOGY = "Sorry, I'm having trouble answering right now. Could you say that again?"
MAX_WER = 0.25


@pytest.fixture(scope="module")
def cloud_server(fakes):
    deepgram, openai = fakes
    env = {
        "DEEPGRAM_API_KEY": "test-key",
        "DEEPGRAM_BASE_URL": deepgram.base_url,
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_BASE_URL": openai.base_url,
        "VOICEBOT_GREETING": "",
        "VOICEBOT_LLM_STALL_SECS": "2",
        "VOICEBOT_SILENCE_TIMEOUT_SECS": "0",
        # One LLM request per answer, so the retry policy's requests can be counted; speculative
        # replies have their own module (test_speculative_replies.py).
        "VOICEBOT_SPECULATIVE_REPLIES": "false",
    }
    server = ServerProcess(env=env).start()
    yield server
    server.stop()


@pytest.fixture
def session(cloud_server, fakes):
    """A fresh session's view: default behaviours, the log from here on, a clean log at the end."""
    deepgram, openai = fakes
    deepgram.behaviour = DeepgramBehaviour()
    openai.behaviour = LLMBehaviour()
    openai.requests.clear()
    start = len(cloud_server.log())
    yield start
    cloud_server.wait_for_log(r"Session \w+ ended", start=start)
    assert cloud_server.unclean_lines(start) == []


async def ask(client: PipecatWebsocketClient, text: str, expect_reply: str) -> None:
    client.say(speech_pcm16(text))
    await client.wait_for(lambda r: expect_reply in llm_text(client), 30, f"the reply {expect_reply!r}")


async def test_a_turn_on_the_production_services(cloud_server, fakes, session):
    deepgram, openai = fakes
    async with PipecatWebsocketClient(f"{cloud_server.ws_url}/ws") as client:
        await ask(client, QUESTION, "Paris is the capital of France.")
        await client.wait_for(
            lambda r: r.rtvi("metrics") and any("turn" in m["data"] for m in r.rtvi("metrics")),
            10,
            "turn metrics",
        )
        spoken_at = client.last_speech_sent_at
        await client.wait_for(lambda r: r.audio_bytes_after(spoken_at) > 24000, 10, "bot audio")

    transcripts = [
        m["data"]["text"] for m in client.received.rtvi("user-transcription") if m["data"]["final"]
    ]
    assert word_error_rate(QUESTION, " ".join(transcripts)) <= MAX_WER, transcripts
    listen = deepgram.listens[-1]
    assert listen.query["model"] == "nova-3-general"
    assert (listen.query["encoding"], listen.query["sample_rate"]) == ("linear16", "16000")
    assert "Finalize" in listen.messages
    assert openai.requests[-1]["stream"] is True
    assert openai.requests[-1]["messages"][-1] == {"role": "user", "content": transcripts[-1]}
    assert "Paris is the capital of France." in "".join(deepgram.speak_texts)

    turn = next(m["data"]["turn"] for m in client.received.rtvi("metrics") if "turn" in m["data"])
    assert turn["turn"] == 1
    for stage in ("stt_finalisation_secs", "llm_ttft_secs", "tts_ttfb_secs", "voice_to_voice_secs"):
        assert turn[stage] is not None and turn[stage] >= 0, turn
    cloud_server.wait_for_log(
        r"turn 1: stt_finalisation=[\d.]+s llm_ttft=[\d.]+s tts_ttfb=[\d.]+s voice_to_voice=", start=session
    )


async def test_the_first_sentence_is_heard_while_the_llm_is_still_writing_the_reply(
    cloud_server, fakes, session
):
    deepgram, openai = fakes
    first = "Paris is the capital of France."
    rest = "It has been the capital for a very long time, and it is also the largest city in the country."
    openai.behaviour = LLMBehaviour(reply=f"{first} {rest}", token_interval=0.1)  # the rest: ~2 s
    deepgram.behaviour.tts_seconds_per_char = 0.02
    async with PipecatWebsocketClient(f"{cloud_server.ws_url}/ws") as client:
        await ask(client, QUESTION, first)
        asked = len(openai.requests) - 1
        await client.wait_for(lambda r: r.rtvi("bot-stopped-speaking"), 20, "the whole reply spoken")
    received = client.received
    assert asked in openai.completed_at, "the bot stopped speaking before the LLM had finished the reply"
    first_audio = received.first_audio_after(client.last_speech_sent_at)
    assert first_audio is not None and first_audio < openai.completed_at[asked], (
        "no audio before the LLM had written the whole reply"
    )
    # Spoken as two syntheses (the first flushed early), all of it, as one stretch of bot speech.
    assert [text.strip() for text in deepgram.speak_texts[-2:]] == [first, rest]
    assert len(received.rtvi("bot-started-speaking")) == 1
    heard = len(received.audio_between(received.times("bot-started-speaking")[0])) / (24000 * 2)
    assert heard >= 0.02 * len(first + rest) * 0.95, f"{heard:.2f}s of the reply was heard"


async def test_stt_drop_mid_utterance_loses_no_audio(cloud_server, fakes, session):
    deepgram, _ = fakes
    deepgram.behaviour.drop_listen_after_speech_secs = 1.0
    connections_before = len(deepgram.listens)
    async with PipecatWebsocketClient(f"{cloud_server.ws_url}/ws") as client:
        await ask(client, QUESTION, "Paris is the capital of France.")
    transcripts = [
        m["data"]["text"] for m in client.received.rtvi("user-transcription") if m["data"]["final"]
    ]
    assert len(deepgram.listens) - connections_before == 2, "the drop forced exactly one reconnect"
    assert words(" ".join(transcripts)) == words(QUESTION), transcripts
    cloud_server.wait_for_log(r"replayed [\d.]+s of audio after reconnecting", start=session)


async def test_stt_reconnect_transcribes_every_word_and_sends_the_finalize_it_owes(
    cloud_server, fakes, session
):
    """Deepgram drops mid-question and takes the reconnect only after the user stopped speaking:
    the audio of both sides of the gap is replayed and the Finalize due in the gap is sent."""
    deepgram, _ = fakes
    reconnect = threading.Event()
    deepgram.behaviour.drop_listen_after_speech_secs = 0.5
    deepgram.behaviour.reconnect_gate = reconnect
    connections_before = len(deepgram.listens)
    async with PipecatWebsocketClient(f"{cloud_server.ws_url}/ws") as client:
        client.say(speech_pcm16(QUESTION))
        await client.wait_for(lambda r: client.last_speech_sent_at, 15, "the question to be sent")
        await asyncio.sleep(1.0)  # the server's VAD (0.2 s stop) hears the question end meanwhile
        assert len(deepgram.listens) - connections_before == 1, "reconnected before the gate opened"
        reconnect.set()
        await client.wait_for(
            lambda r: "Paris is the capital of France." in llm_text(client), 30, "the reply"
        )
    transcripts = [
        m["data"]["text"] for m in client.received.rtvi("user-transcription") if m["data"]["final"]
    ]
    assert words(" ".join(transcripts)) == words(QUESTION), transcripts
    dropped, resumed = deepgram.listens[connections_before:]
    assert "Finalize" not in dropped.messages and "Finalize" in resumed.messages
    cloud_server.wait_for_log(r"replayed [\d.]+s of audio after reconnecting", start=session)
    cloud_server.wait_for_log(r"sent the Finalize owed since the user stopped speaking", start=session)


@pytest.mark.parametrize(
    ("fault", "requests_for_first_turn"),
    [
        (LLMBehaviour(status=429), 2),
        (LLMBehaviour(status=500), 2),
        (LLMBehaviour(stall_after_tokens=0, stall_secs=5), 2),  # no token for VOICEBOT_LLM_STALL_SECS
        (LLMBehaviour(drop_after_tokens=2), 1),  # words already spoken: no retry
    ],
    ids=["429", "500", "stall", "drop-mid-stream"],
)
async def test_llm_failure_gets_an_apology_and_the_next_turn_works(
    cloud_server, fakes, session, fault, requests_for_first_turn
):
    _, openai = fakes
    openai.behaviour = fault
    async with PipecatWebsocketClient(f"{cloud_server.ws_url}/ws") as client:
        await ask(client, QUESTION, APOLOGY)
        assert len(openai.requests) == requests_for_first_turn
        await client.wait_for(lambda r: APOLOGY in " ".join(r.bot_texts()), 15, "the apology to be spoken")
        openai.behaviour = LLMBehaviour(reply="Madrid is the capital of Spain.")
        await ask(client, FOLLOW_UP, "Madrid is the capital of Spain.")
        await client.wait_for(
            lambda r: "Madrid is the capital of Spain." in r.bot_texts(), 15, "the answer spoken"
        )


async def test_tts_failure_still_delivers_the_reply_as_text(cloud_server, fakes, session):
    deepgram, openai = fakes
    deepgram.behaviour.fail_next_speaks = 1
    async with PipecatWebsocketClient(f"{cloud_server.ws_url}/ws") as client:
        await ask(client, QUESTION, "Paris is the capital of France.")
        openai.behaviour = LLMBehaviour(reply="Madrid is the capital of Spain.")
        await ask(client, FOLLOW_UP, "Madrid is the capital of Spain.")
        await client.wait_for(
            lambda r: "Madrid is the capital of Spain." in r.bot_texts(), 15, "the next reply spoken"
        )
        # ... and it ends: the reconnected TTS owes no acknowledgement of a flush the dead one took.
        spoken_at = client.received.times("bot-started-speaking")[-1]
        await client.wait_for(
            lambda r: any(at > spoken_at for at in r.times("bot-stopped-speaking")), 15, "the reply's end"
        )


async def test_bad_credentials_end_the_session_with_error_and_the_server_stays_up(
    cloud_server, fakes, session
):
    deepgram, _ = fakes
    deepgram.behaviour.api_key = "another-key"  # the server's DEEPGRAM_API_KEY is now wrong
    async with PipecatWebsocketClient(f"{cloud_server.ws_url}/ws") as client:
        await client.wait_closed(timeout=20)
    assert client.received.server_messages()[-1]["reason"] == "error"
    assert (client.received.close_code, client.received.close_reason) == (1000, "error")
    cloud_server.wait_for_log(
        r"deepgram STT \(.*\); check DEEPGRAM_API_KEY .* stopped working", start=session
    )
    cloud_server.wait_for_log(r"ended: reason=error", start=session)

    deepgram.behaviour.api_key = "test-key"
    async with PipecatWebsocketClient(f"{cloud_server.ws_url}/ws") as client:
        await ask(client, QUESTION, "Paris is the capital of France.")


async def test_barge_in_interrupts_the_bot_quietly(cloud_server, fakes, session):
    deepgram, openai = fakes
    long_reply = "Paris is the capital of France, and it has been for a very long time indeed."
    openai.behaviour = LLMBehaviour(reply=long_reply)
    deepgram.behaviour.tts_seconds_per_char = 0.12  # about nine seconds of bot speech
    async with PipecatWebsocketClient(f"{cloud_server.ws_url}/ws") as client:
        await ask(client, QUESTION, long_reply)
        await client.wait_for(lambda r: r.rtvi("bot-started-speaking"), 15, "the bot to start speaking")
        openai.behaviour = LLMBehaviour(reply="Go ahead.")
        await ask(client, "Wait, stop please.", "Go ahead.")
        await client.wait_for(lambda r: len(r.times("bot-started-speaking")) >= 2, 15, "the second reply")
    received = client.received
    assert received.rtvi("bot-interrupted")
    # The client got only part of the ~9 s reply before the answer to the interruption began.
    first_reply, second_reply = received.times("bot-started-speaking")[:2]
    heard = len(received.audio_between(first_reply, second_reply)) / (24000 * 2)
    assert heard < 0.12 * len(long_reply) * 0.8, f"{heard:.1f}s of the long reply was sent"
