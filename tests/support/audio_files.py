"""Encode PCM into real audio files (WAV, MP3, Ogg/Opus, WebM/Opus, FLAC, M4A/AAC) with PyAV."""

from __future__ import annotations

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
    container_format, codec, codec_rate = FORMATS[fmt]
    out = io.BytesIO()
    with av.open(out, mode="w", format=container_format) as container:
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
    return out.getvalue()
