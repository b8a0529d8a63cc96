"""The network edge for benchmarks, in its own process: Deepgram (STT + TTS) and OpenAI fakes.

Zero added delay, and recognition is scripted (every finalised utterance is the same question),
so the figures measure the pipeline, not the services or a local STT model.
Prints one JSON line with the URLs, then serves until killed.
"""

from __future__ import annotations

import json
import signal
import threading

from tests.fakes.deepgram_server import DeepgramBehaviour, FakeDeepgramServer
from tests.fakes.openai_server import FakeOpenAIServer, LLMBehaviour

REPLY = "The weather is sunny today. It should stay warm until the evening."


class ScriptedTranscriber:
    """Stands in for speech recognition: any audio is the same question."""

    async def transcribe(self, pcm16: bytes) -> str:
        return "What is the weather like today?" if pcm16 else ""


def main() -> None:
    deepgram = FakeDeepgramServer(
        ScriptedTranscriber(), DeepgramBehaviour(tts_seconds_per_char=0.015)
    ).start()
    openai = FakeOpenAIServer(LLMBehaviour(reply=REPLY, token_interval=0.0)).start()
    print(json.dumps({"deepgram": deepgram.base_url, "openai": openai.base_url}), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    deepgram.stop()
    openai.stop()


if __name__ == "__main__":
    main()
