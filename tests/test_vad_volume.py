"""RollingVolumeTracker: Pipecat's VAD volume, window for window, at a fraction of its CPU."""

from __future__ import annotations

import numpy as np
import pytest
from pipecat.audio.volume import AudioVolumeTracker

from processors.vad_volume import RollingVolumeTracker
from tests.support.speech import levels_pcm16

WINDOW = {16000: 512, 8000: 256}  # Silero's window: the chunk the VAD measures volume on


def volumes(tracker: AudioVolumeTracker, audio: bytes, sample_rate: int) -> list[float]:
    size = 2 * WINDOW[sample_rate]
    measured = []
    for start in range(0, len(audio) - size + 1, size):
        tracker.update(audio[start : start + size], sample_rate)
        measured.append(tracker.volume)
    return measured


@pytest.mark.parametrize("sample_rate", [16000, 8000])
def test_every_window_has_pipecats_volume(sample_rate):
    audio = levels_pcm16(sample_rate)
    theirs = volumes(AudioVolumeTracker(), audio, sample_rate)
    ours = volumes(
        RollingVolumeTracker(sample_rate=sample_rate, chunk_samples=WINDOW[sample_rate]), audio, sample_rate
    )

    assert len(ours) == len(theirs) > 200
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)
    # The clip covers what the gate sees: below the absolute gate, around the VAD's threshold, loud.
    assert 0.0 in theirs[20:]
    assert any(0.5 < v < 0.6 for v in theirs) and any(0.6 <= v < 0.7 for v in theirs)
    assert max(theirs) > 0.85


def test_reset_forgets_the_window_as_pipecats_does():
    audio = levels_pcm16(16000)
    ours = RollingVolumeTracker(sample_rate=16000, chunk_samples=512)
    volumes(ours, audio[: len(audio) // 2], 16000)
    ours.reset()
    rest = audio[len(audio) // 2 // 1024 * 1024 :]
    np.testing.assert_allclose(
        volumes(ours, rest, 16000), volumes(AudioVolumeTracker(), rest, 16000), atol=1e-12
    )


def test_other_chunks_are_refused_rather_than_mismeasured():
    tracker = RollingVolumeTracker(sample_rate=16000, chunk_samples=512)
    with pytest.raises(ValueError):
        tracker.update(bytes(640), 16000)
    with pytest.raises(ValueError):
        tracker.update(bytes(1024), 8000)
