"""Client audio decoding: format from the bytes, every common container, streamed chunks, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support.audio_files import FORMATS, encode
from transports.audio_decoder import AudioDecodeError, ClientAudioDecoder, detect_container


def tone(seconds: float = 1.0, rate: int = 16000, frequency: float = 440.0) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * frequency * t) * 8000).astype(np.int16).tobytes()


def dominant_frequency(pcm16: bytes, rate: int = 16000) -> float:
    samples = np.frombuffer(pcm16, dtype=np.int16).astype(np.float32)
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(samples.size, 1 / rate)[spectrum.argmax()])


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_container_is_detected_and_decoded_to_16k_mono(fmt):
    data = encode(tone(1.0), fmt)
    assert detect_container(data) == {"m4a": "mp4"}.get(fmt, fmt)
    pcm = ClientAudioDecoder(16000).decode(data)
    seconds = len(pcm) / 2 / 16000
    assert 0.95 <= seconds <= 1.15, seconds  # codecs add a little padding
    assert abs(dominant_frequency(pcm) - 440) < 10


def test_raw_pcm_passes_through_and_odd_bytes_carry_over():
    decoder = ClientAudioDecoder(16000)
    pcm = tone(0.1)
    assert decoder.decode(pcm[:101]) + decoder.decode(pcm[101:]) == pcm


def test_raw_pcm_at_another_rate_is_resampled():
    decoder = ClientAudioDecoder(16000)
    decoder.set_pcm_rate(48000)
    source = tone(1.0, 48000)
    pcm = b"".join(decoder.decode(source[i : i + 1920]) for i in range(0, len(source), 1920))
    assert abs(len(pcm) / 2 - 16000) < 800  # a streaming resampler holds back ~20 ms
    assert abs(dominant_frequency(pcm) - 440) < 10


@pytest.mark.parametrize("fmt", ["webm", "ogg", "mp3"])
def test_recorder_chunks_decode_like_the_whole_recording(fmt):
    data = encode(tone(2.0), fmt)
    whole = ClientAudioDecoder(16000).decode(data)
    decoder = ClientAudioDecoder(16000)
    chunks = [data[i : i + 2000] for i in range(0, len(data), 2000)]  # header only in the first
    streamed = b"".join(decoder.decode(chunk) for chunk in chunks)
    assert abs(len(streamed) - len(whole)) < 0.05 * len(whole)
    assert abs(dominant_frequency(streamed) - 440) < 10


def test_a_whole_file_then_raw_pcm():
    decoder = ClientAudioDecoder(16000)
    decoder.decode(encode(tone(0.5), "wav"))
    assert decoder.decode(b"\x01\x00\x02\x00") == b"\x01\x00\x02\x00"


@pytest.mark.parametrize(
    "garbage",
    [b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk", b"fLaC" + bytes(range(200)), b"OggS" + b"\xff" * 70000],
)
def test_corrupt_containers_raise_a_clear_error(garbage):
    with pytest.raises(AudioDecodeError, match=r"could not decode|no audio"):
        ClientAudioDecoder(16000).decode(garbage)


def test_unsupported_rate_is_refused():
    with pytest.raises(AudioDecodeError, match="unsupported sample rate"):
        ClientAudioDecoder(16000).set_pcm_rate(1000)
