"""Where a streamed container's units begin and end, read from their headers without decoding.

A recording streamed in chunks (MediaRecorder WebM/Ogg, MP3, AAC) has its header in the first
message only, so a later message carries no sign of what it is. Following the container's own
framing (Ogg pages, MPEG/ADTS frames, EBML elements) tells whether a message continues the open
stream, where the stream ends (Ogg end-of-stream page, the end of a WebM Segment of known size),
and that a message starting where no unit can start is something else: raw PCM or a new file.
"""

from __future__ import annotations

from collections.abc import Callable

# 120 s of audio (the most a client may send ahead of real time) is about 6,000 frames, blocks
# or pages in any of these containers; far more units in one message is an attack on the parser.
MAX_UNITS_PER_MESSAGE = 20_000


class FramingError(ValueError):
    """The bytes stop following the container's framing."""


_MPEG1_L3_KBPS = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_MPEG2_L3_KBPS = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
_MPEG_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def mpeg_frame_length(data: bytes, at: int) -> int | None:
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


def adts_frame_length(data: bytes, at: int) -> int | None:
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


class Framing:
    """Follows one stream's units across messages.

    `feed(data)` returns how many leading bytes of `data` belong to the stream: all of them, or
    fewer once the stream is over (`ended`): it ended inside the message (an end-of-stream page,
    the end of a Segment of known size), or the message starts, on a unit boundary, with
    something that is not a unit (it does not continue the stream: 0). Bytes that break the
    framing anywhere else raise `FramingError`.

    Example::

        framing = OggFraming()
        taken = framing.feed(message)   # message[:taken] continues the stream
    """

    HEAD_BYTES = 16  # enough bytes to read any unit's length
    REST_OF_MESSAGE = -1  # a trailer (tag) that runs to the end of the message and the stream

    def __init__(self) -> None:
        self.ended = False
        self.offset = 0  # stream bytes before the current unit's start or the current position
        self._head = b""  # the start of a unit header split across messages
        self._rest = 0  # bytes left in the current unit
        self._end_after_unit = False

    def feed(self, data: bytes) -> int:
        pos, units = 0, 0
        while pos < len(data) and not self.ended:
            if self._rest:
                step = min(self._rest, len(data) - pos)
                self._rest -= step
                pos += step
                self.offset += step
                if not self._rest:
                    self.ended = self._end_after_unit or self._complete()
                continue
            units += 1
            if units > MAX_UNITS_PER_MESSAGE:  # a flood of tiny elements: Python work, no audio
                raise FramingError(f"more than {MAX_UNITS_PER_MESSAGE} container units in one message")
            head = self._head + data[pos : pos + self.HEAD_BYTES]
            try:
                length = self._unit(head)
            except FramingError as e:
                if pos == 0 and not self._head and self.offset > 0:
                    self.ended = True
                    return 0  # a message that is not the continuation of this stream
                raise FramingError(f"{e} at byte {self.offset}") from None
            if length is None:  # the header goes on in the next message
                self._head = head
                return len(data)
            if length == 0:  # the stream ended at this boundary; the rest is something else
                self.ended = True
                break
            if length == self.REST_OF_MESSAGE:
                self.ended = True
                self.offset += len(data) - pos
                return len(data)
            self.offset += len(self._head)
            self._rest = length - len(self._head)
            self._head = b""
        return pos

    def _unit(self, head: bytes) -> int | None:
        """The length of the unit starting with `head` (None: need more bytes; 0: stream over)."""
        raise NotImplementedError

    def _complete(self) -> bool:
        """Whether the stream is complete at this unit boundary."""
        return False


class OggFraming(Framing):
    """Ogg pages; the stream ends with the end-of-stream page of its last logical stream."""

    HEAD_BYTES = 27 + 255

    def __init__(self) -> None:
        super().__init__()
        self._serials: set[bytes] = set()

    def _unit(self, head: bytes) -> int | None:
        if not (head[:4] == b"OggS" and head[4:5] in (b"", b"\x00")) and head != b"OggS"[: len(head)]:
            raise FramingError("not an Ogg page")
        if len(head) < 27 or len(head) < 27 + head[26]:
            return None
        segments, flags, serial = head[26], head[5], head[14:18]
        if flags & 2:
            self._serials.add(serial)
        if flags & 4:
            self._serials.discard(serial)
            self._end_after_unit = not self._serials
        return 27 + segments + sum(head[27 : 27 + segments])


# Tags an MP3 may carry between or after its frames: ID3v1, APE, Lyrics3.
_MPEG_TRAILERS = (b"TAG", b"APETAGEX", b"LYRICSBEGIN")


class MpegFraming(Framing):
    """MP3 or ADTS frames, after an optional ID3v2 tag; a trailing tag ends the stream."""

    def __init__(self, frame_length: Callable[[bytes, int], int | None]) -> None:
        super().__init__()
        self._frame_length = frame_length

    def _unit(self, head: bytes) -> int | None:
        for tag, needed in ((b"ID3", 10), *((trailer, len(trailer)) for trailer in _MPEG_TRAILERS)):
            if len(head) < needed and head[: len(tag)] == tag[: len(head)]:
                return None
        if head[:3] == b"ID3":
            size = (head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9]
            return 10 + size + (10 if head[5] & 0x10 else 0)
        if head.startswith(_MPEG_TRAILERS):
            return self.REST_OF_MESSAGE
        if head[:1] == b"\xff" and len(head) < 7:
            return None
        length = self._frame_length(head, 0)
        if length is None:
            raise FramingError("not an audio frame")
        return length


_EBML_HEADER, _SEGMENT, _CLUSTER = 0x1A45DFA3, 0x18538067, 0x1F43B675
# Matroska's top-level elements (children of the Segment), EBML Void and CRC-32 included.
_SEGMENT_CHILDREN = {
    0x114D9B74, 0x1549A966, 0x1654AE6B, _CLUSTER, 0x1C53BB6B, 0x1043A770, 0x1254C367, 0x1941A469, 0xEC, 0xBF,
}  # fmt: skip
# A Cluster's children: Timestamp, SimpleBlock, BlockGroup, Position, PrevSize, SilentTracks, …
_CLUSTER_CHILDREN = {0xE7, 0xA3, 0xA0, 0xA7, 0xAB, 0x5854, 0xAF, 0xEC, 0xBF}


def _vint(data: bytes, at: int) -> tuple[int, int] | None:
    """An EBML variable-length integer at `at`: (its bytes as a number, its length)."""
    if at >= len(data):
        return None
    if data[at] == 0:
        raise FramingError("not an EBML element")
    length = 9 - data[at].bit_length()
    if at + length > len(data):
        return None
    return int.from_bytes(data[at : at + length], "big"), length


class EbmlFraming(Framing):
    """WebM/Matroska elements: the Segment and its Clusters are entered (their size may be
    unknown, as MediaRecorder writes them), every other element is passed over whole."""

    def __init__(self) -> None:
        super().__init__()
        self._open: list[tuple[int, int | None]] = []  # (id, end offset, None if unknown)
        self._segment_seen = False

    def _complete(self) -> bool:
        while self._open and self._open[-1][1] == self.offset:
            self._open.pop()
        if self._open and (self._open[-1][1] or self.offset) < self.offset:
            raise FramingError(f"an element overruns its parent at byte {self.offset}")
        return self._segment_seen and not self._open

    def _unit(self, head: bytes) -> int | None:
        element = _vint(head, 0)
        size = element and _vint(head, element[1])
        if size is None:
            return None
        (element_id, id_length), (raw_size, size_length) = element, size
        if id_length > 4:
            raise FramingError("not an EBML element")
        header = id_length + size_length
        value = raw_size & ((1 << (7 * size_length)) - 1)
        unknown = value == (1 << (7 * size_length)) - 1
        end = None if unknown else self.offset + header + value
        open_ids = [element for element, _ in self._open]
        if open_ids[-1:] == [_CLUSTER] and self._open[-1][1] is None and element_id not in _CLUSTER_CHILDREN:
            self._open.pop()  # an unknown-size Cluster ends where a top-level element starts
            open_ids.pop()
        parent = open_ids[-1] if open_ids else None
        if element_id == _EBML_HEADER and self._segment_seen:
            if any(end is not None for _, end in self._open):
                raise FramingError("a new EBML header inside a Segment")
            return 0  # a new file starts here
        if parent is None and element_id == _SEGMENT:
            self._segment_seen = True
            self._open.append((_SEGMENT, end))
            return header
        if parent == _SEGMENT and element_id == _CLUSTER:
            self._open.append((_CLUSTER, end))
            return header
        allowed = {None: {_EBML_HEADER, 0xEC}, _SEGMENT: _SEGMENT_CHILDREN, _CLUSTER: _CLUSTER_CHILDREN}
        if element_id not in allowed[parent]:
            raise FramingError("not a WebM element here")
        if unknown:
            raise FramingError("an element of unknown size")
        return header + value


def framing_for(kind: str) -> Framing:
    """The framing of a streamable container kind ("webm", "ogg", "mp3", "aac")."""
    if kind == "ogg":
        return OggFraming()
    if kind == "webm":
        return EbmlFraming()
    return MpegFraming(adts_frame_length if kind == "aac" else mpeg_frame_length)
