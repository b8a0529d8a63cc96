"""Encode PCM into real audio files (WAV, MP3, Ogg/Opus, WebM/Opus, FLAC, M4A/AAC) with PyAV."""

from __future__ import annotations

import functools
import io

import av
import numpy as np

# format name -> (container, codec, codec sample rate)
FORMATS = {
    "wav": ("wav", "pcm_s16le", 16000),
    "mp3": ("mp3", "libmp3lame", 44100),
    "ogg": ("ogg", "libopus", 48000),
    "webm": ("webm", "libopus", 48000),
    "flac": ("flac", "flac", 16000),
    "m4a": ("ipod", "aac", 44100),
}


def encode(pcm16: bytes, fmt: str, sample_rate: int = 16000) -> bytes:
    """`pcm16` (mono, `sample_rate`) as a complete file of format `fmt`."""
    out = io.BytesIO()
    _encode_into(out, pcm16, fmt, sample_rate)
    return out.getvalue()


def _encode_into(out, pcm16: bytes, fmt: str, sample_rate: int, options: dict | None = None) -> None:
    container_format, codec, codec_rate = FORMATS[fmt]
    with av.open(out, mode="w", format=container_format, options=options or {}) as container:
        stream = container.add_stream(codec, rate=codec_rate)
        stream.layout = "mono"
        resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=codec_rate)
        samples = np.frombuffer(pcm16, dtype=np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = sample_rate
        for resampled in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(resampled):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


class _Sink:
    """A write-only, non-seekable output: muxers then write what a live recorder writes."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> int:
        self.data += data
        return len(data)


def media_recorder_webm(pcm16: bytes, sample_rate: int = 16000) -> bytes:
    """WebM/Opus as a browser's MediaRecorder writes it: the Segment and every Cluster of
    unknown size (no Cues, nothing patched at the end), so it only ends where the data stops."""
    out = _Sink()
    _encode_into(out, pcm16, "webm", sample_rate, options={"live": "1"})
    data = out.data
    at = data.find(b"\x18\x53\x80\x67") + 12  # the Segment's children (its size is 8 bytes)
    while at < len(data):  # FFmpeg buffers each Cluster and writes its size: make it unknown
        id_length = 9 - data[at].bit_length()
        size_length = 9 - data[at + id_length].bit_length()
        size_at = at + id_length
        size = int.from_bytes(data[size_at : size_at + size_length], "big") & ((1 << (7 * size_length)) - 1)
        if data[at : at + id_length] == b"\x1f\x43\xb6\x75":
            unknown = (1 << (7 * size_length + 1)) - 1  # all value bits set
            data[size_at : size_at + size_length] = unknown.to_bytes(size_length, "big")
        at = size_at + size_length + size
    return bytes(data)


@functools.cache
def flac_silence(seconds: float, sample_rate: int = 16000) -> bytes:
    """A decompression bomb: `seconds` of digital silence as FLAC in the largest frames, a few
    bytes per 65,535 samples (2 hours at 16 kHz are 33 kB)."""
    out = io.BytesIO()
    block = np.zeros((1, sample_rate * 60), dtype=np.int16)
    with av.open(out, mode="w", format="flac") as container:
        options = {"compression_level": "0", "frame_size": "65535"}
        stream = container.add_stream("flac", rate=sample_rate, options=options)
        stream.layout = "mono"
        for _ in range(int(seconds // 60)):
            frame = av.AudioFrame.from_ndarray(block, format="s16", layout="mono")
            frame.sample_rate = sample_rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


def without_last_ogg_page(data: bytes) -> bytes:
    """An Ogg stream cut before its end-of-stream page: a recording still going on."""
    return data[: data.rindex(b"OggS")]
