"""The foundation, end to end: real server, real models, real socket, real speech at real time."""

from __future__ import annotations

import json
import time
import urllib.request

from tests.support.pipecat_client import PipecatWebsocketClient
from tests.support.speech import speech_pcm16, word_error_rate

QUESTION = "What is the capital of France?"
MAX_WER = 0.25  # Moonshine scores 97-100 % word accuracy on Piper speech (offline-stack notes)


def test_healthz_reports_the_offline_stack(offline_server):
    with urllib.request.urlopen(f"{offline_server.base_url}/healthz") as response:
        health = json.load(response)
    assert health["status"] == "ok"
    assert health["providers"] == "STT=local LLM=local TTS=local"


async def test_spoken_question_is_transcribed_and_answered(offline_server):
    log_start = len(offline_server.log())
    async with PipecatWebsocketClient(f"{offline_server.ws_url}/ws") as client:
        # The greeting is spoken first.
        await client.wait_for(lambda r: r.rtvi("bot-stopped-speaking"), 20, "the greeting to finish")
        assert client.received.audio_bytes_after(0) > 24000 * 2 * 0.5

        client.say(speech_pcm16(QUESTION))
        transcripts = await client.wait_for(
            lambda r: [m["data"]["text"] for m in r.rtvi("user-transcription") if m["data"]["final"]],
            30,
            "the question's transcript",
        )
        assert word_error_rate(QUESTION, " ".join(transcripts)) <= MAX_WER, transcripts

        spoken_at = client.last_speech_sent_at
        await client.wait_for(lambda r: r.audio_bytes_after(spoken_at) > 24000 * 2 * 0.5, 30, "bot audio")
        latency = client.received.first_audio_after(spoken_at) - spoken_at
        print(f"voice-to-voice (last speech frame sent -> first bot audio): {latency:.2f}s")
        assert client.received.rtvi("bot-output"), "the bot's reply text reaches the client too"

    # The client hung up: the session ends by itself, promptly, with a clean log.
    hung_up_at = time.monotonic()
    offline_server.wait_for_log(r"Session \w+ ended: reason=client_gone", timeout=10, start=log_start)
    print(f"session ended {time.monotonic() - hung_up_at:.2f}s after the client hung up")
    assert offline_server.unclean_lines(log_start) == []
    with urllib.request.urlopen(f"{offline_server.base_url}/healthz") as response:
        assert json.load(response)["active_sessions"] == 0
