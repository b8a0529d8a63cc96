"""Transcribing an utterance while it is spoken: where to cut it, and how to join the pieces.

A segmented STT (Moonshine) hears an utterance only once the VAD says it has ended, so the user
waits for the whole of it to be transcribed. Cut at the speaker's pauses instead, each piece
can be transcribed as soon as it is complete, and after the end of speech only the tail is
left. The last pause is usually the end of speech itself, so the tail is often just silence.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np

WINDOW_SECS = 0.01
QUIET_RMS_FLOOR = 30.0  # 16-bit RMS below which a 10 ms window is quiet, on a silent line
NOISE_FACTOR = 3.0  # ...or below this multiple of the line's noise floor (measured before speech)
# A quiet stretch this long may be the end of a phrase: transcribe what came before, on spec.
PAUSE_SECS = 0.06
# ...and this long, it is one: keep that transcript. Shorter quiet stretches occur inside words
# (the closure before a "t": "ho|tel" was cut at 60 ms and came back as "host? tell").
CONFIRM_SECS = 0.15
# Speech a piece needs before it may end: shorter pieces lose words at their edges (measured on
# Piper speech: a 0.2 s piece holding only "What" came back empty).
MIN_SPEECH_SECS = 0.8


class PauseEvent(NamedTuple):
    """`pause`: a piece may end at `offset` (bytes from the start of all audio fed);
    `resumed`: speech went on, so it does not; `confirmed`: the pause was long enough, it does."""

    kind: Literal["pause", "resumed", "confirmed"]
    offset: int


def window_rms(pcm16: bytes, window_bytes: int) -> np.ndarray:
    """RMS of each whole window of 16-bit mono PCM."""
    samples = np.frombuffer(pcm16[: len(pcm16) // window_bytes * window_bytes], dtype=np.int16)
    windows = samples.astype(np.float32).reshape(-1, window_bytes // 2)
    return np.sqrt((windows**2).mean(axis=1))


class PauseCutter:
    """Finds where an utterance may be cut, from its audio as it arrives.

    A cut falls in the middle of the first `PAUSE_SECS` of a pause that follows
    `MIN_SPEECH_SECS` of speech since the last confirmed cut. The pause is reported at once
    (so its piece can be transcribed while it lasts) and confirmed once it reaches
    `CONFIRM_SECS`; if speech resumes first, the cut is withdrawn. At the end of an utterance a
    reported pause stands: no speech followed it.

    Example::

        cutter = PauseCutter(16000, pre_roll)   # the audio before the VAD said "speaking"
        for event in cutter.feed(frame.audio): ...
    """

    def __init__(self, sample_rate: int, pre_roll: bytes = b""):
        self._window_bytes = int(sample_rate * WINDOW_SECS) * 2
        self._min_speech_windows = round(MIN_SPEECH_SECS / WINDOW_SECS)
        self._pause_windows = round(PAUSE_SECS / WINDOW_SECS)
        self._confirm_windows = round(CONFIRM_SECS / WINDOW_SECS)
        noise = window_rms(pre_roll, self._window_bytes)
        floor = float(np.median(noise)) if noise.size else 0.0
        self._quiet_rms = max(QUIET_RMS_FLOOR, NOISE_FACTOR * floor)
        self._partial = bytearray()  # audio short of a whole window
        self._windows = 0  # whole windows analysed
        self._speech = 0  # speech windows since the last confirmed cut
        self._quiet_run = 0
        self._pending: int | None = None  # a reported, unconfirmed cut
        self.feed(pre_roll)

    def feed(self, pcm16: bytes) -> list[PauseEvent]:
        """Analyse more audio; return what it tells about cuts, in order."""
        self._partial += pcm16
        whole = len(self._partial) // self._window_bytes * self._window_bytes
        levels = window_rms(bytes(self._partial[:whole]), self._window_bytes)
        del self._partial[:whole]
        events = []
        for level in levels:
            self._windows += 1
            if level >= self._quiet_rms:
                self._speech += 1
                self._quiet_run = 0
                if self._pending is not None:
                    events.append(PauseEvent("resumed", self._pending))
                    self._pending = None
                continue
            self._quiet_run += 1
            if self._quiet_run == self._pause_windows and self._speech >= self._min_speech_windows:
                self._pending = (self._windows - self._quiet_run // 2) * self._window_bytes
                events.append(PauseEvent("pause", self._pending))
            elif self._quiet_run == self._confirm_windows and self._pending is not None:
                events.append(PauseEvent("confirmed", self._pending))
                self._pending, self._speech = None, 0
        return events


def join_pieces(pieces: list[str]) -> str:
    """The transcripts of consecutive pieces as one: a piece's closing full stop or comma was a
    guess at a cut the speaker did not mean as a sentence end, so it goes, and the next piece
    continues in lower case (except "I")."""
    text = ""
    for piece in filter(None, (p.strip() for p in pieces)):
        if not text:
            text = piece
            continue
        if text[-1] in ".,":
            text = text[:-1]
            first_word = piece.split()[0]
            if first_word != "I" and not first_word.startswith("I'"):
                piece = piece[0].lower() + piece[1:]
        text = f"{text} {piece}"
    return text
