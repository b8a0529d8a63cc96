"""`/ws/simple` end to end: any audio format, JSON events, errors that do not end the session,
push-to-talk for fifty turns on both STT paths, and the end notice."""

from __future__ import annotations

import asyncio
import json

import pytest

from bots.call import SimpleClient
from processors.moonshine_stt import MoonshineTranscriber
from tests.fakes.deepgram_server import FakeDeepgramServer
from tests.fakes.openai_server import LLMBehaviour
from tests.support.audio_files import FORMATS, encode
from tests.support.server import ServerProcess, fake_services_env
from tests.support.speech import silence_pcm16, speech_pcm16, word_error_rate

QUESTION = "What is the capital of France?"
REPLY = "Paris is the capital of France."
MAX_WER = 0.25


@pytest.fixture(scope="module")
def deepgram():
    server = FakeDeepgramServer(MoonshineTranscriber()).start()
    yield server
    server.stop()


BASE_ENV = {"VOICEBOT_GREETING": "", "VOICEBOT_SILENCE_TIMEOUT_SECS": "0", "VOICEBOT_IDLE_TIMEOUT_SECS": "30"}


@pytest.fixture(scope="module")
def offline_stt_server(llm):
    """Offline STT and TTS; the LLM is the fake (fast and deterministic)."""
    server = ServerProcess(env={**BASE_ENV, "OPENAI_BASE_URL": llm.base_url}).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def deepgram_server(llm, deepgram):
    server = ServerProcess(env={**BASE_ENV, **fake_services_env(deepgram.base_url, llm.base_url)}).start()
    yield server
    server.stop()


def finals(client: SimpleClient) -> list[str]:
    return [event["text"] for event in client.of_type("transcript") if event["final"]]


async def turn_transcript(client: SimpleClient) -> str:
    """The user's whole turn: the VAD may split it into several final segments; the reply
    starts once the turn is over."""
    await client.wait_for(lambda c: c.of_type("bot_text"), 40, "the reply")
    return " ".join(finals(client))


async def hang_up(client: SimpleClient) -> None:
    await client.send_json({"type": "hangup"})
    await client.wait_closed(timeout=15)
    assert client.of_type("end")[-1] == {"type": "end", "reason": "client_hangup"}
    assert (client.close_code, client.close_reason) == (1000, "client_hangup")


@pytest.mark.parametrize("fmt", sorted(FORMATS))
async def test_a_whole_recording_in_any_format_is_recognised(offline_stt_server, fmt):
    start = len(offline_stt_server.log())
    async with SimpleClient(f"{offline_stt_server.ws_url}/ws/simple") as client:
        ready = await client.wait_for(lambda c: c.of_type("ready"), 10, "ready")
        assert ready[0]["input_sample_rate"] == 16000 and ready[0]["output_sample_rate"] == 24000
        await client.send_bytes(encode(speech_pcm16(QUESTION), fmt))
        transcript = await turn_transcript(client)
        assert word_error_rate(QUESTION, transcript) <= MAX_WER, (fmt, transcript)
        await hang_up(client)
    assert offline_stt_server.unclean_lines(start) == []


async def test_an_mp3_sent_whole_is_answered_before_any_idle_timeout(llm):
    """The app records, sends one MP3, and waits in silence; idle must not beat the answer."""
    llm.behaviour = LLMBehaviour(reply=REPLY, first_token_delay=4.0)
    server = ServerProcess(
        env={**BASE_ENV, "OPENAI_BASE_URL": llm.base_url, "VOICEBOT_IDLE_TIMEOUT_SECS": "2"}
    ).start()
    try:
        async with SimpleClient(f"{server.ws_url}/ws/simple") as client:
            await client.send_bytes(encode(speech_pcm16(QUESTION), "mp3"))
            await client.wait_closed(timeout=60)
    finally:
        llm.behaviour = LLMBehaviour(reply=REPLY)
        server.stop()
    kinds = [event["type"] for _, event in client.events]
    assert kinds.index("bot_text") < kinds.index("bot_stopped_speaking") < kinds.index("end")
    assert client.of_type("bot_text")[0]["text"] == REPLY
    assert len(client.bot_audio()) > 24000 * 2 * 0.5
    assert client.of_type("end") == [{"type": "end", "reason": "idle_timeout"}]
    assert (client.close_code, client.close_reason) == (1000, "idle_timeout")
    assert server.unclean_lines() == []


async def test_recorder_chunks_streamed_in_real_time_are_recognised(offline_stt_server):
    """A browser MediaRecorder: WebM/Opus in 250 ms chunks, the header only in the first."""
    recording = encode(speech_pcm16(QUESTION) + silence_pcm16(0.5), "webm")
    seconds = len(speech_pcm16(QUESTION)) / 32000 + 0.5
    step = max(1, int(len(recording) * 0.25 / seconds))
    async with SimpleClient(f"{offline_stt_server.ws_url}/ws/simple") as client:
        for start in range(0, len(recording), step):
            await client.send_bytes(recording[start : start + step])
            await asyncio.sleep(0.25)
        transcript = await turn_transcript(client)
        await hang_up(client)
    assert word_error_rate(QUESTION, transcript) <= MAX_WER, transcript


async def test_raw_pcm_at_the_rate_announced_by_start(offline_stt_server):
    async with SimpleClient(f"{offline_stt_server.ws_url}/ws/simple") as client:
        await client.send_json({"type": "start", "sample_rate": 48000})
        await client.wait_for(lambda c: len(c.of_type("ready")) == 2, 10, "the second ready")
        assert client.of_type("ready")[1]["input_sample_rate"] == 48000
        await client.stream_pcm(speech_pcm16(QUESTION, sample_rate=48000) + silence_pcm16(0.6, 48000), 48000)
        transcript = await turn_transcript(client)
        await hang_up(client)
    assert word_error_rate(QUESTION, transcript) <= MAX_WER, transcript


async def test_bad_input_gets_an_error_and_the_session_goes_on(offline_stt_server):
    start = len(offline_stt_server.log())
    async with SimpleClient(f"{offline_stt_server.ws_url}/ws/simple") as client:
        await client.send_bytes(b"OggS" + bytes(range(256)) * 300)  # claims Ogg, is not
        await client.send_text_frame("{not json")
        await client.send_text_frame("[1, 2]")
        await client.send_json({"type": "dance"})
        await client.send_json({"type": "ptt", "active": "yes"})
        await client.send_json({"type": "start", "sample_rate": 5})
        await client.send_json({"type": "text", "text": ""})
        errors = await client.wait_for(
            lambda c: len(c.of_type("error")) >= 7 and c.of_type("error"), 15, "errors"
        )
        codes = [error["code"] for error in errors]
        assert codes == [
            "bad_audio",
            "bad_json",
            "bad_message",
            "unknown_type",
            "bad_message",
            "bad_message",
            "bad_message",
        ]
        assert all(error["message"] for error in errors)
        # ...and the session still works.
        await client.send_bytes(encode(speech_pcm16(QUESTION), "wav"))
        await client.wait_for(lambda c: c.of_type("bot_text"), 30, "the answer")
        await hang_up(client)
    assert offline_stt_server.unclean_lines(start) == []


async def test_typed_text_is_answered(offline_stt_server, llm):
    async with SimpleClient(f"{offline_stt_server.ws_url}/ws/simple") as client:
        await client.send_json({"type": "text", "text": "Tell me about Paris."})
        await client.wait_for(lambda c: c.of_type("bot_text"), 20, "the answer")
        await hang_up(client)
    assert llm.requests[-1]["messages"][-1] == {"role": "user", "content": "Tell me about Paris."}
    assert client.of_type("bot_text")[0]["text"] == REPLY


async def push_to_talk_turns(server: ServerProcess, turns: int) -> SimpleClient:
    """`turns` push-to-talk turns in a row, each pressed as soon as the last was transcribed.

    The audio goes at 4x real time: the button, not the clock, delimits these turns.
    """
    utterance = speech_pcm16("Hello there, how are you?")
    async with SimpleClient(f"{server.ws_url}/ws/simple") as client:
        for turn in range(1, turns + 1):
            await client.send_json({"type": "ptt", "active": True})
            await client.stream_pcm(utterance, speed=4.0)
            await client.send_json({"type": "ptt", "active": False})
            await client.wait_for(lambda c, n=turn: len(finals(c)) >= n, 20, f"turn {turn}'s transcript")
        await hang_up(client)
    return client


@pytest.mark.parametrize("stt", ["offline", "deepgram"])
async def test_fifty_push_to_talk_turns_leave_clean_logs(stt, offline_stt_server, deepgram_server, deepgram):
    server = offline_stt_server if stt == "offline" else deepgram_server
    start, connections = len(server.log()), len(deepgram.listens)
    client = await push_to_talk_turns(server, 50)
    transcripts = finals(client)
    assert len(transcripts) == 50
    assert max(word_error_rate("Hello there, how are you?", t) for t in transcripts) <= 0.4, transcripts
    server.wait_for_log(r"ended: reason=client_hangup", start=start)
    assert server.unclean_lines(start) == []
    if stt == "deepgram":
        # One connection for all fifty turns: each release finalised, none reconnected.
        assert len(deepgram.listens) - connections == 1
        assert deepgram.listens[-1].messages.count("Finalize") == 50


async def test_holding_the_button_pauses_the_silence_timeout(llm):
    env = {**BASE_ENV, "OPENAI_BASE_URL": llm.base_url, "VOICEBOT_SILENCE_TIMEOUT_SECS": "1.5"}
    server = ServerProcess(env=env).start()
    try:
        async with SimpleClient(f"{server.ws_url}/ws/simple") as client:
            await client.send_json({"type": "ptt", "active": True})
            await client.stream_pcm(silence_pcm16(4.0))  # thinking with the button held
            assert client.of_type("bot_text") == []
            await client.send_json({"type": "ptt", "active": False})
            # Released with nothing said: Pipecat may ask the user to repeat (an empty turn
            # before the bot ever spoke counts as an interruption); then the clock runs.
            prompted = client.stream_pcm(silence_pcm16(10.0))
            waiting = client.wait_for(
                lambda c: "Are you still there?" in [e["text"] for e in c.of_type("bot_text")],
                12,
                "the prompt",
            )
            await asyncio.gather(prompted, waiting)
            await hang_up(client)
    finally:
        server.stop()


async def test_tts_failure_still_sends_the_reply_text(deepgram_server, deepgram):
    deepgram.behaviour.fail_next_speaks = 1
    async with SimpleClient(f"{deepgram_server.ws_url}/ws/simple") as client:
        await client.send_bytes(encode(speech_pcm16(QUESTION), "wav"))
        await client.wait_for(lambda c: c.of_type("bot_text"), 30, "the reply text")
        await hang_up(client)
    assert client.of_type("bot_text")[0]["text"] == REPLY


def test_events_are_one_json_object_per_message(offline_stt_server):
    """Guard for client parsers: every text message is a single JSON object with a type."""

    async def run() -> SimpleClient:
        async with SimpleClient(f"{offline_stt_server.ws_url}/ws/simple") as client:
            await client.send_bytes(encode(speech_pcm16(QUESTION), "flac"))
            await client.wait_for(lambda c: c.of_type("bot_stopped_speaking"), 30, "the reply")
            await hang_up(client)
        return client

    client = asyncio.run(run())
    assert all(isinstance(event, dict) and isinstance(event.get("type"), str) for _, event in client.events)
    assert json.dumps(client.of_type("end")[-1]) == '{"type": "end", "reason": "client_hangup"}'
