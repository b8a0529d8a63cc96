"""Client audio decoding: format from the bytes, every common container, streamed chunks, bad input."""

from __future__ import annotations

import struct
import threading

import numpy as np
import pytest

from tests.support.audio_files import (
    FORMATS,
    encode,
    flac_silence,
    media_recorder_webm,
    without_last_ogg_page,
)
from transports.audio_decoder import (
    STREAM_PENDING_BYTES,
    AudioBudgetExceeded,
    AudioDecodeError,
    ClientAudioDecoder,
    _Pcm,
    _Pipe,
    detect_container,
)


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


# --- bounded decoding, streams decoded once, stream boundaries ---------------------------------


def test_a_flac_bomb_stops_at_the_cap_without_decoding_the_rest(monkeypatch):
    decoded_secs = []
    add = _Pcm.add
    monkeypatch.setattr(
        _Pcm, "add", lambda pcm, frame: add(pcm, frame) if frame is None else (
            decoded_secs.append(frame.samples / frame.sample_rate), add(pcm, frame))
    )  # fmt: skip
    bomb = flac_silence(2 * 3600)
    with pytest.raises(AudioBudgetExceeded, match=r"runs past the 120.0s it may still get ahead"):
        ClientAudioDecoder(16000).decode(bomb, max_samples=16000 * 120)
    assert sum(decoded_secs) <= 120 + max(decoded_secs), "decoding stopped at the cap, not 2 hours later"


@pytest.mark.parametrize("fmt", ["wav", "mp3", "ogg", "webm", "m4a"])
def test_any_format_past_the_cap_is_refused_and_within_it_is_accepted(fmt):
    data = encode(tone(3.0), fmt)
    with pytest.raises(AudioBudgetExceeded):
        ClientAudioDecoder(16000).decode(data, max_samples=16000 * 2)
    # An MP3 stream has no end marker: its last frames wait for more data (or its end).
    assert len(ClientAudioDecoder(16000).decode(data, max_samples=16000 * 4)) >= 2 * 16000 * 2.85


def test_raw_pcm_past_the_cap_is_refused():
    decoder = ClientAudioDecoder(16000)
    decoder.set_pcm_rate(8000)  # 1 s at 8 kHz is 1 s at 16 kHz
    with pytest.raises(AudioBudgetExceeded):
        decoder.decode(tone(1.0, 8000), max_samples=15000)


@pytest.mark.parametrize("fmt", ["ogg", "webm", "mp3"])
def test_a_stream_reads_each_byte_once(fmt, monkeypatch):
    """Each chunk goes to FFmpeg once, however many chunks follow (no re-decoding)."""
    read = []
    original = _Pipe.read
    monkeypatch.setattr(_Pipe, "read", lambda self, size: read.append(original(self, size)) or read[-1])
    data = without_last_ogg_page(encode(tone(20.0), fmt)) if fmt == "ogg" else encode(tone(20.0), fmt)
    decoder = ClientAudioDecoder(16000)
    pcm = b"".join(decoder.decode(data[i : i + 500]) for i in range(0, len(data), 500))
    assert sum(map(len, read)) == len(data)
    assert len(pcm) / 32000 > 19.8
    decoder.close()


def test_tiny_messages_after_a_long_stream_cost_next_to_nothing(monkeypatch):
    ogg = without_last_ogg_page(encode(tone(110.0), "ogg"))
    decoder = ClientAudioDecoder(16000)
    decoder.decode(ogg)
    read = []
    original = _Pipe.read
    monkeypatch.setattr(_Pipe, "read", lambda self, size: read.append(original(self, size)) or read[-1])
    for _ in range(30):
        decoder.decode(b"\x00")
    decoder.close()
    assert sum(map(len, read)) <= 30, "only the new bytes were read, not the 110 s before them again"


def test_a_media_recorder_webm_in_chunks_then_raw_pcm():
    """Segment and Clusters of unknown size never end by themselves: raw PCM does end them."""
    webm = media_recorder_webm(tone(2.0))
    decoder = ClientAudioDecoder(16000)
    streamed = b"".join(decoder.decode(webm[i : i + 1000]) for i in range(0, len(webm), 1000))
    assert abs(len(streamed) / 32000 - 2.0) < 0.05
    assert abs(dominant_frequency(streamed) - 440) < 10
    pcm = tone(0.1, frequency=1000)
    after = decoder.decode(pcm)
    assert after.endswith(pcm) and len(after) - len(pcm) < 0.05 * 32000  # the stream's tail, then PCM
    assert decoder.decode(pcm) == pcm


@pytest.mark.parametrize("fmt", ["ogg", "webm", "mp3"])
def test_raw_pcm_after_a_whole_streamable_recording_is_pcm(fmt):
    decoder = ClientAudioDecoder(16000)
    decoder.decode(encode(tone(1.0), fmt))
    pcm = tone(0.1, frequency=1000)
    assert decoder.decode(pcm).endswith(pcm)
    assert decoder.decode(pcm) == pcm


def test_a_new_header_ends_the_open_stream_and_starts_another():
    decoder = ClientAudioDecoder(16000)
    first = decoder.decode(media_recorder_webm(tone(1.0)))
    second = decoder.decode(media_recorder_webm(tone(1.0, frequency=880)))
    assert abs(len(first + second) / 32000 - 2.0) < 0.05
    assert abs(dominant_frequency(second[-16000:]) - 880) < 10


def test_garbage_that_breaks_the_stream_mid_message_is_an_error_then_pcm_works():
    ogg = encode(tone(1.0), "ogg")
    decoder = ClientAudioDecoder(16000)
    decoder.decode(ogg[:3000])
    with pytest.raises(AudioDecodeError, match=r"could not decode ogg audio: not an Ogg page"):
        decoder.decode(ogg[3000:6000] + b"\x00" * 70000)
    pcm = tone(0.1)
    assert decoder.decode(pcm) == pcm


def test_a_stream_without_audio_is_given_up_after_the_pending_cap():
    """WebM framing stays valid (Void elements) but nothing in it is audio."""
    webm = media_recorder_webm(tone(1.0))
    header = webm[: webm.index(b"\x1f\x43\xb6\x75")]
    void = b"\xec\x10\x01\x00\x00" + bytes(65536)  # a 64 KiB EBML Void element
    decoder = ClientAudioDecoder(16000)
    decoder.decode(header)
    with pytest.raises(AudioDecodeError, match=r"no audio in \d+ bytes"):
        for _ in range(STREAM_PENDING_BYTES // len(void) + 2):
            decoder.decode(void)


def test_a_stream_over_the_cap_is_dropped_until_a_new_header():
    ogg = encode(tone(4.0), "ogg")
    decoder = ClientAudioDecoder(16000)
    with pytest.raises(AudioBudgetExceeded):
        decoder.decode(ogg[: len(ogg) // 2], max_samples=16000)
    assert decoder.decode(ogg[len(ogg) // 2 :], max_samples=16000 * 10) == b""  # the rest: dropped
    assert len(decoder.decode(encode(tone(1.0), "ogg"), max_samples=16000 * 10)) > 0.9 * 32000


def decoding_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("decode-")]


def test_fragmented_mp4_chunks_are_refused_not_taken_for_pcm():
    fragment = (24).to_bytes(4, "big") + b"moof" + bytes(16) + (1000).to_bytes(4, "big") + b"mdat"
    with pytest.raises(AudioDecodeError, match="fragmented MP4"):
        ClientAudioDecoder(16000).decode(fragment + bytes(992))


def test_close_ends_the_stream_thread():
    decoder = ClientAudioDecoder(16000)
    before = set(decoding_threads())
    decoder.decode(media_recorder_webm(tone(1.0)))
    [thread] = set(decoding_threads()) - before
    assert thread.is_alive()
    assert decoder.close() == "webm"
    assert not thread.is_alive()
    assert decoder.close() is None


def wav_claiming(rate: int, data_bytes: int) -> bytes:
    """A 16-bit mono WAV whose header claims `rate` Hz."""
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + data_bytes, b"WAVE", b"fmt ", 16, 1, 1,
                         rate, rate * 2, 2, 16, b"data", data_bytes)  # fmt: skip
    return header + bytes(data_bytes)


def test_a_recording_at_an_absurd_sample_rate_is_refused_before_resampling():
    # 65,536 samples "at 1 Hz" would be resampled to a billion samples (found in review: +1 GB).
    with pytest.raises(AudioDecodeError, match="unsupported sample rate 1 Hz"):
        ClientAudioDecoder(16000).decode(wav_claiming(1, 131072), max_samples=16000 * 120)
    assert len(ClientAudioDecoder(16000).decode(wav_claiming(8000, 16000))) == 32000  # 1 s at 8 kHz


def test_a_webm_of_tiny_elements_is_refused_after_a_bounded_amount_of_parsing():
    # An EBML header then 2-byte Void elements: millions of Python loop turns for no audio.
    flood = b"\x1a\x45\xdf\xa3\x80" + b"\xec\x80" * (2**20)
    with pytest.raises(AudioDecodeError, match="container units"):  # the cap on parsing work
        ClientAudioDecoder(16000).decode(flood, max_samples=16000 * 120)
