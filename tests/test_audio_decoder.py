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


def test_pcm_that_looks_like_a_frame_sync_is_still_pcm():
    """A sample of 0xFBFF (bytes FF FB) starts like an MP3 frame; one header is not enough."""
    frame = bytes([0xFF, 0xFB, 0x90, 0x64]) + bytes(636)
    adts_like = bytes([0xFF, 0xF1, 0x50, 0x80, 0x02, 0x1F]) + bytes(634)
    decoder = ClientAudioDecoder(16000)
    assert detect_container(frame) is None and detect_container(adts_like) is None
    assert decoder.decode(frame) == frame
    assert decoder.decode(adts_like) == adts_like


def test_raw_speech_streamed_in_20ms_frames_is_never_taken_for_a_container():
    rng = np.random.default_rng(7)
    noise = (rng.normal(0, 9000, 16000 * 30)).clip(-32768, 32767).astype(np.int16).tobytes()
    frames = [noise[i : i + 640] for i in range(0, len(noise), 640)]
    assert [detect_container(f) for f in frames].count(None) == len(frames)


def test_a_bare_mp3_stream_without_id3_is_detected():
    data = encode(tone(1.0), "mp3")
    if data[:3] == b"ID3":  # skip the tag to get at the first frame header
        data = data[10 + ((data[6] << 21) | (data[7] << 14) | (data[8] << 7) | data[9]) :]
    assert detect_container(data) == "mp3"
    assert abs(dominant_frequency(ClientAudioDecoder(16000).decode(data)) - 440) < 10
