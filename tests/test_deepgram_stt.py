"""ResilientDeepgramSTTService against the Deepgram fake: live audio in batched messages, never late."""

from __future__ import annotations

import asyncio

import pytest
from pipecat.frames.frames import (
    InputAudioRawFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.services.deepgram.stt import DeepgramSTTService
from pipecat.tests.utils import run_test

from processors.deepgram_stt import BATCH_SECS, ResilientDeepgramSTTService
from tests.fakes.deepgram_server import FakeDeepgramServer, ListenLog
from tests.fakes.openai_server import tone_pcm16

RATE = 16000
FRAME_BYTES = 640  # a 20 ms frame, as transports deliver them


class FixedTranscriber:
    """The fake's recogniser: the same words for any audio (the test is about the audio's path)."""

    async def transcribe(self, audio: bytes) -> str:
        return "what is the capital of France" if audio else ""


@pytest.fixture(scope="module")
def deepgram():
    server = FakeDeepgramServer(FixedTranscriber()).start()
    yield server
    server.stop()


def frames(audio: bytes) -> list[InputAudioRawFrame]:
    return [
        InputAudioRawFrame(audio=audio[i : i + FRAME_BYTES], sample_rate=RATE, num_channels=1)
        for i in range(0, len(audio), FRAME_BYTES)
    ]


async def closed_listen(deepgram: FakeDeepgramServer, stt_class: type[DeepgramSTTService]) -> ListenLog:
    """Speech (2.06 s, with the VAD's start and stop), 0.14 s of trailing audio, then the end of the
    pipeline: what Deepgram received on the one connection, once it was closed."""
    speech, tail = tone_pcm16(2.06, RATE), bytes(7 * FRAME_BYTES)  # neither a whole number of batches
    connections = len(deepgram.listens)
    stt = stt_class(api_key="test-key", base_url=deepgram.base_url)
    await run_test(
        stt,
        frames_to_send=[
            VADUserStartedSpeakingFrame(),
            *frames(speech),
            VADUserStoppedSpeakingFrame(),
            *frames(tail),
        ],
    )
    assert len(deepgram.listens) == connections + 1
    listen = deepgram.listens[-1]
    async with asyncio.timeout(10):
        while "CloseStream" not in listen.messages:
            await asyncio.sleep(0.01)
    assert listen.audio_bytes == len(speech) + len(tail)
    finalize = listen.messages.index("Finalize")
    assert listen.audio_bytes_at[finalize] == len(speech), "the Finalize came before the speech's end"
    assert listen.audio_bytes_at[listen.messages.index("CloseStream")] == len(speech) + len(tail)
    return listen


async def test_live_audio_goes_in_batches_of_at_most_100_ms_and_all_before_finalize(deepgram):
    ours = await closed_listen(deepgram, ResilientDeepgramSTTService)
    pipecats = await closed_listen(deepgram, DeepgramSTTService)

    seconds = ours.audio_bytes / 2 / RATE
    assert pipecats.audio_messages / seconds == pytest.approx(50)  # one per 20 ms frame
    assert ours.audio_messages / seconds <= 1 / BATCH_SECS + 1  # ten a second, plus the tail's
    assert ours.audio_messages < pipecats.audio_messages / 4
