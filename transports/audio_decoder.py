"""Client audio in any common form, turned into the pipeline's 16-bit mono PCM.

Clients send raw PCM, whole recordings (WAV, MP3, Ogg/Opus, WebM/Opus, FLAC, M4A/AAC) or
MediaRecorder chunks (WebM/Ogg, container header only in the first chunk). The format is
detected from the bytes themselves, never from a client flag, and containers are decoded with
PyAV (FFmpeg), resampled to the pipeline rate.

Decoding is bounded: a caller passes the most samples it will accept (the real-time budget left)
and decoding stops as soon as the audio passes it, so a small file that expands to hours of
audio costs next to nothing. Streamed containers are demuxed incrementally, each byte once: a
per-stream thread runs FFmpeg's demuxer on a blocking pipe the messages are written into.
"""

from __future__ import annotations

import io
import threading
from collections import deque

import av
import numpy as np
import soxr

from transports.container_framing import (
    Framing,
    FramingError,
    adts_frame_length,
    framing_for,
    mpeg_frame_length,
)


class AudioDecodeError(ValueError):
    """The bytes are not audio we can decode; the message says why, for the client."""


class AudioBudgetExceeded(AudioDecodeError):
    """The audio decodes to more samples than the caller accepts; decoding stopped there."""

    def __init__(self, seconds: float):
        super().__init__(f"the audio runs past the {seconds:.1f}s it may still get ahead of real time")


# Formats a recorder streams in chunks (only the first chunk has the header).
STREAMABLE = {"webm", "ogg", "mp3", "aac"}
# A stream whose last this many bytes produced no audio is reported as undecodable: it bounds
# what FFmpeg buffers (an Ogg page is at most 64 KiB, a WebM block or an MP3 frame far less).
STREAM_PENDING_BYTES = 256 * 1024
# Sample rates real recordings use; anything else is refused before it reaches a resampler.
MIN_SOURCE_RATE, MAX_SOURCE_RATE = 8000, 192000
# How long one message's share of a stream may take to decode before the stream is given up.
STREAM_DECODE_SECS = 10.0
_FFMPEG_FORMAT = {"webm": "matroska", "ogg": "ogg", "mp3": "mp3", "aac": "aac"}
# The format is known, so FFmpeg need not read ahead to guess codec parameters.
_PROBE_OPTIONS = {"probesize": "32768", "analyzeduration": "100000"}


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
    if data[4:8] in (b"moof", b"styp"):
        return "mp4 fragment"
    if data[:3] == b"ID3":
        return "mp3"
    # Bare MPEG audio / ADTS start with an 11/12-bit sync word that raw PCM hits by chance
    # (any sample 0xFFEx..0xFFFx little-endian), so demand two valid frame headers in a row.
    if _chained(data, adts_frame_length):
        return "aac"
    if _chained(data, mpeg_frame_length):
        return "mp3"
    return None


def _chained(data: bytes, frame_length) -> bool:
    first = frame_length(data, 0)
    return first is not None and frame_length(data, first) is not None


class _Pcm:
    """Decoded frames resampled to mono s16 at `rate` into one buffer that may not pass `cap`
    samples: the frame that would pass it raises `AudioBudgetExceeded` and nothing more is kept."""

    def __init__(self, rate: int):
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        self._rate = rate
        self.data = bytearray()
        self.cap: int | None = None

    def add(self, frame: av.AudioFrame | None) -> None:
        """Add a decoded frame (None: flush what the resampler holds back). The frame's rate and
        its size after resampling are checked first: a header claiming 1 Hz would otherwise make
        FFmpeg's resampler allocate thousands of output samples per input sample."""
        if frame is not None:
            if not MIN_SOURCE_RATE <= frame.sample_rate <= MAX_SOURCE_RATE:
                raise AudioDecodeError(f"unsupported sample rate {frame.sample_rate} Hz")
            expected = frame.samples * self._rate // frame.sample_rate
            if self.cap is not None and len(self.data) // 2 + expected > self.cap:
                raise AudioBudgetExceeded(self.cap / self._rate)
        for out in self._resampler.resample(frame):
            if self.cap is not None and len(self.data) // 2 + out.samples > self.cap:
                raise AudioBudgetExceeded(self.cap / self._rate)
            self.data += out.to_ndarray().tobytes()

    def take(self) -> bytes:
        data, self.data = bytes(self.data), bytearray()
        return data


class _Pipe:
    """A blocking, non-seekable file for FFmpeg's demuxer thread, written to by `decode` calls.

    `read` blocks until bytes arrive or the pipe is closed (then it returns b"", the end of the
    stream). `idle` tells the writer that the demuxer has taken every byte and waits for more.
    """

    def __init__(self, condition: threading.Condition):
        self._condition = condition
        self._chunks: deque[tuple[bytes, int]] = deque()
        self._closed = False
        self.waiting = False
        self.unproductive = 0  # bytes read since the last decoded audio
        self.overrun = False

    def write(self, data: bytes) -> None:
        with self._condition:
            self._chunks.append((data, 0))
            self.waiting = False
            self._condition.notify_all()

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    @property
    def idle(self) -> bool:
        return self.waiting and not self._chunks

    def read(self, size: int) -> bytes:
        with self._condition:
            while not self._chunks and not self._closed:
                self.waiting = True
                self._condition.notify_all()
                self._condition.wait()
            self.waiting = False
            if self.unproductive > STREAM_PENDING_BYTES:
                self.overrun = True
                return b""  # end the stream: bytes keep coming and none of them is audio
            if not self._chunks:
                return b""
            data, at = self._chunks[0]
            piece = data[at : at + size]
            if at + size >= len(data):
                self._chunks.popleft()
            else:
                self._chunks[0] = (data, at + size)
            self.unproductive += len(piece)
            return piece


class _ContainerStream:
    """One streamed recording: its framing, and a thread running FFmpeg's demuxer and decoder
    on the bytes as they come, so each byte is decoded once."""

    def __init__(self, kind: str, target_rate: int):
        self.kind = kind
        self.framing: Framing = framing_for(kind)
        self.failed = False
        self._condition = threading.Condition()
        self._pipe = _Pipe(self._condition)
        self._pcm = _Pcm(target_rate)
        self._error: BaseException | None = None
        self._done = False
        self._thread = threading.Thread(target=self._run, name=f"decode-{kind}", daemon=True)
        self._thread.start()

    def push(self, data: bytes, max_samples: int | None) -> bytes:
        """Decode the stream's next bytes; returns the audio they complete."""
        if self.failed:
            return b""
        with self._condition:
            self._pcm.cap = max_samples
        self._pipe.write(data)
        return self._collect(lambda: self._pipe.idle or self._done)

    def finish(self, max_samples: int | None) -> bytes:
        """The stream is over: decode what FFmpeg still holds, then end the thread."""
        if self.failed:
            self.close()
            return b""
        with self._condition:
            self._pcm.cap = max_samples
        self._pipe.close()
        return self._collect(lambda: self._done)

    def close(self, wait: bool = True) -> None:
        """End the thread without waiting for its audio."""
        self.failed = True
        self._pipe.close()
        if wait:
            self._thread.join(timeout=STREAM_DECODE_SECS)

    def _collect(self, ready) -> bytes:
        with self._condition:
            if not self._condition.wait_for(ready, timeout=STREAM_DECODE_SECS):
                self._error = AudioDecodeError(f"decoding the {self.kind} stream took too long")
            if self._pipe.overrun:
                self._error = AudioDecodeError(f"no audio in {STREAM_PENDING_BYTES} bytes")
            error = self._error
            pcm = self._pcm.take()
        if error is not None:
            self.close()
            if isinstance(error, AudioBudgetExceeded):
                raise error
            raise AudioDecodeError(f"could not decode {self.kind} audio: {error}") from error
        return pcm

    def _run(self) -> None:
        try:
            with av.open(
                self._pipe, mode="r", format=_FFMPEG_FORMAT[self.kind], options=_PROBE_OPTIONS
            ) as container:
                if not container.streams.audio:
                    raise AudioDecodeError(f"the {self.kind} data has no audio track")
                for packet in container.demux(container.streams.audio[0]):
                    for frame in packet.decode():
                        self._add(frame)
            self._add(None)
        except Exception as e:  # reported to the client by the next push, never raised here
            self._error = e
        finally:
            with self._condition:
                self._done = True
                self._condition.notify_all()

    def _add(self, frame: av.AudioFrame | None) -> None:
        with self._condition:
            if self.failed:
                raise AudioDecodeError("stream closed")
            self._pcm.add(frame)
            if self._pcm.data:
                self._pipe.unproductive = 0


class ClientAudioDecoder:
    """Decodes one client's audio messages into mono 16-bit PCM at `target_rate`.

    Each binary message is raw PCM, a whole file (WAV, FLAC, M4A, or a WebM/Ogg/MP3/AAC
    recording), or the continuation of the WebM/Ogg/MP3/AAC stream the client opened with a
    header: a message continues that stream when it follows the container's framing (pages,
    frames, elements). A stream ends at its own end (Ogg end-of-stream page, end of a WebM
    Segment of known size), at a new container header, or at a message that does not continue
    it, which is then read afresh: raw PCM is never appended to a container.

    `max_samples` bounds a message's decoded audio: past it, decoding stops and
    `AudioBudgetExceeded` is raised (a stream is then dropped until a new header). Call `close()`
    when the session ends, to stop a stream's decoding thread.

    Example::

        decoder = ClientAudioDecoder(target_rate=16000)
        pcm = decoder.decode(message, max_samples=16000 * 120)
        ...
        decoder.close()
    """

    def __init__(self, target_rate: int = 16000):
        self.target_rate = target_rate
        self._pcm_rate = target_rate
        self._pcm_resampler: soxr.ResampleStream | None = None
        self._odd_byte = b""
        self._stream: _ContainerStream | None = None
        self._lock = threading.Lock()  # close() from the session's end waits for a decode

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

    def decode(self, data: bytes, max_samples: int | None = None) -> bytes:
        """Decode one binary message; returns the new PCM (possibly empty, e.g. a bare header)."""
        with self._lock:
            return self._decode(data, max_samples)

    def close(self) -> str | None:
        """End the open stream, if any, and its thread; returns the kind of stream closed."""
        with self._lock:
            return self._close_stream()

    def __del__(self) -> None:
        """A decoder dropped without `close()` still ends its stream's thread."""
        if getattr(self, "_stream", None) is not None:
            self._stream.close(wait=False)

    def _close_stream(self) -> str | None:
        stream, self._stream = self._stream, None
        if stream is None:
            return None
        stream.close()
        return stream.kind

    def _decode(self, data: bytes, max_samples: int | None) -> bytes:
        parts: list[bytes] = []

        def left() -> int | None:
            return None if max_samples is None else max_samples - sum(map(len, parts)) // 2

        while data:
            if self._stream is None:
                kind = detect_container(data)
                if kind is None:
                    parts.append(self._raw_pcm(data, left()))
                    break
                if kind == "mp4 fragment":  # Safari's MediaRecorder: never mistaken for PCM
                    raise AudioDecodeError("fragmented MP4 chunks are not supported: send WebM or Ogg chunks")
                if kind not in STREAMABLE:
                    parts.append(self._decode_file(kind, data, left()))
                    break
                self._stream = _ContainerStream(kind, self.target_rate)
            stream = self._stream
            try:
                taken = stream.framing.feed(data)
            except FramingError as e:
                self._close_stream()
                raise AudioDecodeError(f"could not decode {stream.kind} audio: {e}") from None
            try:
                if taken:
                    parts.append(stream.push(data[:taken], left()))
                if stream.framing.ended:
                    self._stream = None
                    parts.append(stream.finish(left()))
            except AudioDecodeError:
                if stream.framing.ended:
                    self._stream = None
                raise
            data = data[taken:]
        return b"".join(parts)

    def _raw_pcm(self, data: bytes, max_samples: int | None) -> bytes:
        data = self._odd_byte + data
        cut = len(data) - len(data) % 2
        if max_samples is not None and cut // 2 * self.target_rate / self._pcm_rate > max_samples + 1:
            raise AudioBudgetExceeded(max_samples / self.target_rate)
        data, self._odd_byte = data[:cut], data[cut:]
        if self._pcm_resampler is None or not data:
            return data
        samples = np.frombuffer(data, dtype=np.int16)
        return self._pcm_resampler.resample_chunk(samples).tobytes()

    def _decode_file(self, kind: str, data: bytes, max_samples: int | None) -> bytes:
        pcm = _Pcm(self.target_rate)
        pcm.cap = max_samples
        try:
            with av.open(io.BytesIO(data), mode="r") as container:
                if not container.streams.audio:
                    raise AudioDecodeError(f"the {kind} data has no audio track")
                try:
                    for packet in container.demux(container.streams.audio[0]):
                        for frame in packet.decode():
                            pcm.add(frame)
                except av.error.FFmpegError:
                    if not pcm.data:
                        raise
                    # A truncated file: keep what decoded.
            pcm.add(None)
        except av.error.FFmpegError as e:
            raise AudioDecodeError(f"could not decode {kind} audio: {e}") from e
        return pcm.take()
