"""The network edge for benchmarks, in its own process: Deepgram (STT + TTS) and OpenAI fakes.

Recognition is scripted (every utterance is the same question), so the figures measure the
pipeline, not a local STT model. `--delays` chooses how fast the services answer
(`bench/delays.py`): `zero` measures the pipeline alone, `realistic` adds published delays.
Prints one JSON line with the URLs, then serves until killed.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.delays import PROFILES
from tests.fakes.deepgram_server import DeepgramBehaviour, FakeDeepgramServer
from tests.fakes.openai_server import FakeOpenAIServer, LLMBehaviour

ROOT = Path(__file__).resolve().parents[1]
REPLY = "The weather is sunny today. It should stay warm until the evening."


class ScriptedTranscriber:
    """Stands in for speech recognition: any audio is the same question."""

    async def transcribe(self, pcm16: bytes) -> str:
        return "What is the weather like today?" if pcm16 else ""


@contextmanager
def running_fakes(delays: str = "zero") -> Iterator[dict[str, str]]:
    """The fakes in their own process for the duration of the block: yields their base URLs."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.fakes_process", "--delays", delays],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield json.loads(process.stdout.readline())
    finally:
        process.terminate()
        process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--delays", choices=sorted(PROFILES), default="zero")
    delays = PROFILES[parser.parse_args().delays]
    deepgram = FakeDeepgramServer(
        ScriptedTranscriber(),
        DeepgramBehaviour(
            tts_seconds_per_char=0.015,
            interim_every_secs=delays.stt_interim_every,
            final_delay_secs=delays.stt_final,
            tts_first_byte_secs=delays.tts_first_byte,
        ),
    ).start()
    openai = FakeOpenAIServer(
        LLMBehaviour(
            reply=REPLY, first_token_delay=delays.llm_first_token, token_interval=delays.llm_token_interval
        )
    ).start()
    print(json.dumps({"deepgram": deepgram.base_url, "openai": openai.base_url}), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    deepgram.stop()
    openai.stop()


if __name__ == "__main__":
    main()
