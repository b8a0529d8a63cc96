"""Pipecat's VAD volume, computed from each window's new audio instead of 400 ms of it per window.

Pipecat's `VADAnalyzer` gates speech on volume as well as confidence: for every VAD window it
measures the BS.1770 loudness of the last 400 ms (`AudioVolumeTracker` -> `calculate_audio_volume`
-> `loudness.integrated_loudness`). That K-weights 6,400 samples from a silent filter state, once
per 32 ms window: each sample is filtered 12.5 times, about as much CPU as the Silero inference
itself. `RollingVolumeTracker` gets the same value filtering each sample once.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from pipecat.audio.utils import normalize_value
from pipecat.audio.volume import VOLUME_WINDOW_SECS, AudioVolumeTracker

# BS.1770 as libloudness (the `loudness` package) measures it: K-weighting, a -70 LUFS absolute
# gate, and integrated loudness read from a histogram of 0.1 LU bins starting at the gate.
_ABSOLUTE_GATE_LUFS = -70.0
_BIN_LU = 0.1
_BINS = 1000
_FILTER_BLOCK = 32  # samples filtered per matrix product (see _KWeighting)
_INT16_ENERGY = 2.0**-30  # int16 samples are scaled by 2**-15 before filtering; exact in floating point


def _loudness_to_energy(lufs: float) -> float:
    return 10.0 ** ((lufs + 0.691) / 10.0)


def _energy_to_loudness(energy: float) -> float:
    return 10 * math.log10(energy) - 0.691


_ABSOLUTE_GATE = _loudness_to_energy(_ABSOLUTE_GATE_LUFS)
_TOP_BIN_ENERGY = _loudness_to_energy((_BINS - 1) * _BIN_LU + _ABSOLUTE_GATE_LUFS)
# What `calculate_audio_volume` returns for a window whose loudness falls in each histogram bin:
# the one gated block is counted in its bin, and the loudness read back is the bin's centre.
_VOLUME_OF_BIN = [
    normalize_value(
        _energy_to_loudness(_loudness_to_energy(i * _BIN_LU + _ABSOLUTE_GATE_LUFS + _BIN_LU / 2)), -110, -10
    )
    for i in range(_BINS)
]


def volume_of_energy(energy: float) -> float:
    """`calculate_audio_volume`'s value for a 400 ms block of this mean K-weighted energy."""
    if energy < _ABSOLUTE_GATE:
        return 0.0  # below the absolute gate: -inf LUFS, normalised to 0
    if energy >= _TOP_BIN_ENERGY:
        return _VOLUME_OF_BIN[_BINS - 1]
    if energy <= _ABSOLUTE_GATE:
        return _VOLUME_OF_BIN[0]
    return _VOLUME_OF_BIN[int((_energy_to_loudness(energy) - _ABSOLUTE_GATE_LUFS) / _BIN_LU)]


def _k_weighting(sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """BS.1770's K-weighting (high shelf, then RLB high-pass) as one 4th-order filter, as libloudness
    designs it for any rate: numerator `b` and denominator `a` (a[0] = 1)."""
    f0, gain, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    vh = 10.0 ** (gain / 20.0)
    vb = vh**0.4996667741545416
    k = math.tan(math.pi * f0 / sample_rate)
    a0 = 1.0 + k / q + k * k
    pb = np.array([(vh + vb * k / q + k * k) / a0, 2.0 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0])
    pa = np.array([1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0])
    f0, q = 38.13547087602444, 0.5003270373238773
    k = math.tan(math.pi * f0 / sample_rate)
    ra = np.array([1.0, 2.0 * (k * k - 1.0), 1.0 - k / q + k * k]) / (1.0 + k / q + k * k)
    ra[0] = 1.0
    return np.convolve(pb, [1.0, -2.0, 1.0]), np.convolve(pa, ra)


@dataclass(frozen=True)
class _KWeighting:
    """The K-weighting filter in state-space form, with the products that filter a chunk in blocks.

    State s (the filter's 4 delays, direct form II), input x, output y:
    y = C s + D x,  s' = A s + B x.  Over a block of f samples from state s, y = T x + O s and the
    state after it is A^f s + R x, so a chunk is filtered with a few matrix products, each sample once.
    """

    chunk_samples: int
    window_samples: int
    segment_samples: int  # the grid on which windows start: gcd(window, chunk)
    block_matrix: np.ndarray  # x_block @ block_matrix = [T x | R x]
    chain: np.ndarray  # [s0, R x_0, R x_1, ...] -> the state at the start of each block, and after the last
    block_output: np.ndarray  # state at a block's start -> its zero-input output (O^T)
    segment_output: np.ndarray  # y over a segment -> its correlation with the zero-input responses
    segment_powers: np.ndarray  # a segment row [energy, correlation, start] -> A^(segment*k)^T correlation
    gram: np.ndarray  # sum over the window of (C A^n)^T (C A^n)

    @staticmethod
    @functools.cache
    def build(sample_rate: int, chunk_samples: int) -> _KWeighting:
        window = math.ceil(VOLUME_WINDOW_SECS * sample_rate)
        if window != 4 * ((sample_rate + 5) // 10):  # libloudness's block: four 100 ms sub-blocks
            raise ValueError(f"no incremental VAD volume at {sample_rate} Hz")
        segment = math.gcd(window, chunk_samples)
        f = math.gcd(segment, _FILTER_BLOCK)
        b, a = _k_weighting(sample_rate)
        state_a = np.zeros((4, 4))
        state_a[0] = -a[1:]
        state_a[1:, :3] = np.eye(3)
        state_b = np.array([1.0, 0.0, 0.0, 0.0])
        state_c = b[1:] - b[0] * a[1:]

        zero_input = np.empty((window, 4))  # C A^n: the output, n samples on, of a unit state
        row = state_c.copy()
        for n in range(window):
            zero_input[n] = row
            row = row @ state_a
        impulse = np.concatenate(([b[0]], zero_input[: f - 1] @ state_b))
        toeplitz = np.zeros((f, f))
        for n in range(f):
            toeplitz[n, : n + 1] = impulse[n::-1]
        reach = np.empty((4, f))  # R: the state a block leaves from each of its samples
        column = state_b.copy()
        for m in range(f - 1, -1, -1):
            reach[:, m] = column
            column = state_a @ column

        blocks = chunk_samples // f
        a_f = np.linalg.matrix_power(state_a, f)
        chain = np.zeros((4 * (blocks + 1), 4 * (blocks + 1)))
        for k in range(blocks + 1):
            chain[4 * k : 4 * k + 4, :4] = np.linalg.matrix_power(a_f, k)
            for j in range(k):
                chain[4 * k : 4 * k + 4, 4 + 4 * j : 8 + 4 * j] = np.linalg.matrix_power(a_f, k - 1 - j)
        a_segment = np.linalg.matrix_power(state_a, segment)
        return _KWeighting(
            chunk_samples=chunk_samples,
            window_samples=window,
            segment_samples=segment,
            block_matrix=np.ascontiguousarray(np.hstack((toeplitz.T, reach.T))),
            chain=chain,
            block_output=zero_input[:f].T.copy(),
            segment_output=zero_input[:segment].copy(),
            segment_powers=np.vstack(
                [
                    np.vstack((np.zeros((1, 4)), np.linalg.matrix_power(a_segment, k), np.zeros((4, 4))))
                    for k in range(window // segment)
                ]
            ),
            gram=zero_input.T @ zero_input,
        )


class RollingVolumeTracker(AudioVolumeTracker):
    """`AudioVolumeTracker` for a stream of equal chunks, each sample K-weighted once.

    Pipecat's tracker filters the whole 400 ms window from a silent filter state at every read.
    This one runs the filter continuously over the stream and keeps, per segment of the window,
    its energy, its correlation with the filter's zero-input responses and the filter's state at
    its start. The window's energy from a silent start is the continuous energy minus what the
    audio before the window left in the filter (the zero-input response of the state at the
    window's start): a few 4x4 products. The energy matches Pipecat's to rounding; the volume is
    quantised to 0.1 LU bins, so it comes out the same (tests/test_vad_volume.py).

    Example::

        tracker = RollingVolumeTracker(sample_rate=16000, chunk_samples=512)
        tracker.update(chunk, 16000)
        tracker.volume
    """

    def __init__(self, *, sample_rate: int, chunk_samples: int):
        super().__init__()
        self._filter = _KWeighting.build(sample_rate, chunk_samples)
        self.sample_rate = sample_rate
        self.reset()

    def reset(self) -> None:
        """Clear the window and the tracked volume (the filter starts again from silence)."""
        f = self._filter
        self._state = np.zeros(4)
        # Per segment of the window, oldest first: energy, correlation (4), state at its start (4).
        self._segments = np.zeros((f.window_samples // f.segment_samples, 9))
        self._samples = 0
        self._volume = 0.0

    def update(self, audio: bytes, sample_rate: int) -> None:
        """Filter one chunk into the window (every chunk `chunk_samples` long, at the tracker's rate)."""
        f = self._filter
        if sample_rate != self.sample_rate or len(audio) != 2 * f.chunk_samples:
            raise ValueError(
                f"RollingVolumeTracker takes {f.chunk_samples}-sample chunks at {self.sample_rate} Hz, "
                f"got {len(audio) // 2} samples at {sample_rate} Hz"
            )
        block = f.block_output.shape[1]
        products = np.frombuffer(audio, dtype=np.int16).reshape(-1, block) @ f.block_matrix
        states = (f.chain @ np.concatenate((self._state, products[:, block:].ravel()))).reshape(-1, 4)
        self._state = states[-1]
        y = (products[:, :block] + states[:-1] @ f.block_output).reshape(-1, f.segment_samples)

        segments, new = self._segments, y.shape[0]
        segments[:-new] = segments[new:]
        segments[-new:, 0] = np.einsum("ij,ij->i", y, y)
        segments[-new:, 1:5] = y @ f.segment_output
        segments[-new:, 5:] = states[: -1 : f.segment_samples // block]
        self._samples += f.chunk_samples
        if self._samples >= f.window_samples:
            self._volume = None

    @property
    def volume(self) -> float:
        """Volume of the last 400 ms, 0 (quiet) to 1 (loud); 0 until 400 ms have been heard."""
        if self._volume is None:
            f, segments = self._filter, self._segments
            start = segments[0, 5:]
            carried = segments.ravel() @ f.segment_powers  # the window's output against the start's response
            total = segments[:, 0].sum() + start @ (f.gram @ start - 2.0 * carried)
            self._volume = volume_of_energy(total * _INT16_ENERGY / f.window_samples)
        return self._volume
