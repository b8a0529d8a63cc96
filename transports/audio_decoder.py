"""Client audio in any common form, turned into the pipeline's 16-bit mono PCM.

Clients send raw PCM, whole recordings (WAV, MP3, Ogg/Opus, WebM/Opus, FLAC, M4A/AAC) or
MediaRecorder chunks (WebM/Ogg, container header only in the first chunk). The format is
detected from the bytes themselves, never from a client flag, and containers are decoded with
PyAV (FFmpeg), resampled to the pipeline rate.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import av
import numpy as np
import soxr


class AudioDecodeError(ValueError):
    """The bytes are not audio we can decode; the message says why, for the client."""


# Formats a recorder streams in chunks (only the first chunk has the header).
STREAMABLE = {"webm", "ogg", "mp3", "aac"}
# A streamed recording may need this much data before FFmpeg can even probe it; past it, a
# stream that still yields no audio is reported as undecodable.
STREAM_PROBE_BYTES = 64 * 1024


def detect_container(data: bytes) -> str | None:
    """The container format announced by the first bytes, or None for raw PCM."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if data[:4] == b"OggS":
        return "ogg"
    if data[:4] == b"fLaC":
        return "flac"
    if data[4:8] == b"ftyp":
        return "mp4"
    if data[:3] == b"ID3":
        return "mp3"
    # Bare MPEG audio / ADTS start with an 11/12-bit sync word that raw PCM hits by chance
    # (any sample 0xFFEx..0xFFFx little-endian), so demand two valid frame headers in a row.
    if _chained(data, _adts_frame_length):
        return "aac"
    if _chained(data, _mpeg_frame_length):
        return "mp3"
    return None


_MPEG1_L3_KBPS = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_MPEG2_L3_KBPS = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
_MPEG_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _mpeg_frame_length(data: bytes, at: int) -> int | None:
    """Length of the MPEG-1/2/2.5 Layer III frame whose header starts at `at`, if valid."""
    if len(data) < at + 4 or data[at] != 0xFF or data[at + 1] & 0xE0 != 0xE0:
        return None
    version, layer = (data[at + 1] >> 3) & 3, (data[at + 1] >> 1) & 3
    bitrate_index, rate_index = data[at + 2] >> 4, (data[at + 2] >> 2) & 3
    if version == 1 or layer != 1 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    rate = _MPEG_RATES[version][rate_index]
    kbps = (_MPEG1_L3_KBPS if version == 3 else _MPEG2_L3_KBPS)[bitrate_index]
    padding = (data[at + 2] >> 1) & 1
    return (144 if version == 3 else 72) * kbps * 1000 // rate + padding


def _adts_frame_length(data: bytes, at: int) -> int | None:
    """Length of the ADTS (AAC) frame whose header starts at `at`, if valid."""
    if (
        len(data) < at + 7
        or data[at] != 0xFF
        or data[at + 1] & 0xF6 != 0xF0
        or (data[at + 2] >> 2) & 0xF > 12
    ):
        return None
    length = ((data[at + 3] & 3) << 11) | (data[at + 4] << 3) | (data[at + 5] >> 5)
    return length if length >= 7 else None


def _chained(data: bytes, frame_length) -> bool:
    first = frame_length(data, 0)
    return first is not None and frame_length(data, first) is not None


@dataclass
class _ContainerStream:
    """One recording: all its bytes so far, and how much of its audio we already emitted.

    Streamed chunks are only decodable with the header in front, so each new chunk re-decodes
    the recording from its start and emits what is new. Recordings are short (a turn), and a
    full decode of a minute of Opus takes a few tens of milliseconds.
    """

    kind: str
    data: bytearray = field(default_factory=bytearray)
    emitted_samples: int = 0


class ClientAudioDecoder:
    """Decodes one client's audio messages into mono 16-bit PCM at `target_rate`.

    Example::

        decoder = ClientAudioDecoder(target_rate=16000)
        pcm = decoder.decode(message)        # raw PCM, a whole file, or a recorder chunk
    """

    def __init__(self, target_rate: int = 16000):
        self.target_rate = target_rate
        self._pcm_rate = target_rate
        self._pcm_resampler: soxr.ResampleStream | None = None
        self._odd_byte = b""
        self._stream: _ContainerStream | None = None

    @property
    def pcm_rate(self) -> int:
        return self._pcm_rate

    def set_pcm_rate(self, rate: int) -> None:
        """The rate of raw PCM this client sends (from its `start` message)."""
        if not 8000 <= rate <= 192000:
            raise AudioDecodeError(f"unsupported sample rate {rate}; use 8000 to 192000")
        self._pcm_rate = rate
        self._pcm_resampler = (
            None
            if rate == self.target_rate
            else soxr.ResampleStream(rate, self.target_rate, 1, dtype="int16")
        )

    def decode(self, data: bytes) -> bytes:
        """Decode one binary message; returns the new PCM (possibly empty, e.g. a bare header)."""
        kind = detect_container(data)
        if kind is not None:
            self._stream = _ContainerStream(kind)
        elif self._stream is None or self._stream.kind not in STREAMABLE:
            self._stream = None
            return self._raw_pcm(data)
        self._stream.data.extend(data)
        pcm = self._decode_new(self._stream)
        if self._stream.kind not in STREAMABLE:
            self._stream = None  # a whole file: the next raw message is PCM again
        return pcm

    def _raw_pcm(self, data: bytes) -> bytes:
        data = self._odd_byte + data
        cut = len(data) - len(data) % 2
        data, self._odd_byte = data[:cut], data[cut:]
        if self._pcm_resampler is None or not data:
            return data
        samples = np.frombuffer(data, dtype=np.int16)
        return self._pcm_resampler.resample_chunk(samples).tobytes()

    def _decode_new(self, stream: _ContainerStream) -> bytes:
        samples = self._decode_all(stream)
        new = samples[stream.emitted_samples :]
        stream.emitted_samples = max(stream.emitted_samples, samples.size)
        return new.tobytes()

    def _decode_all(self, stream: _ContainerStream) -> np.ndarray:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=self.target_rate)
        chunks: list[np.ndarray] = []
        try:
            with av.open(io.BytesIO(bytes(stream.data)), mode="r") as container:
                if not container.streams.audio:
                    raise AudioDecodeError(f"the {stream.kind} data has no audio track")
                audio = container.streams.audio[0]
                try:
                    for packet in container.demux(audio):
                        for frame in packet.decode():
                            chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
                except av.error.FFmpegError:
                    if not chunks and stream.kind not in STREAMABLE:
                        raise
                    # A recorder chunk may end mid-packet: keep what decoded, the rest comes later.
            chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
        except av.error.FFmpegError as e:
            if stream.kind in STREAMABLE and len(stream.data) < STREAM_PROBE_BYTES:
                return np.zeros(0, dtype=np.int16)  # too early to tell: wait for more chunks
            raise AudioDecodeError(f"could not decode {stream.kind} audio: {e}") from e
        return np.concatenate(chunks).astype(np.int16) if chunks else np.zeros(0, dtype=np.int16)
