"""The browser serializer takes a microphone's audio and nothing that only looks like it."""

from __future__ import annotations

import pipecat.frames.protobufs.frames_pb2 as frame_protos
import pytest
from pipecat.frames.frames import InputAudioRawFrame

from transports.browser import BrowserFrameSerializer


def audio_message(sample_rate: int, num_channels: int = 1, samples: int = 320) -> bytes:
    frame = frame_protos.Frame()
    frame.audio.audio = bytes(2 * samples * max(num_channels, 1))
    frame.audio.sample_rate = sample_rate
    frame.audio.num_channels = num_channels
    return frame.SerializeToString()


async def test_microphone_audio_passes():
    frame = await BrowserFrameSerializer().deserialize(audio_message(16000))
    assert isinstance(frame, InputAudioRawFrame) and frame.sample_rate == 16000


@pytest.mark.parametrize(
    ("sample_rate", "num_channels"), [(0, 1), (1, 1), (1_000_000, 1), (16000, 0), (16000, 2)]
)
async def test_audio_no_microphone_sends_is_dropped_without_an_error(sample_rate, num_channels):
    assert await BrowserFrameSerializer().deserialize(audio_message(sample_rate, num_channels)) is None
