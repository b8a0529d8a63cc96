"""Real speech for tests, made with the offline Piper voice (no network, no system packages)."""

from __future__ import annotations

import functools
import re

import numpy as np
import soxr


@functools.cache
def _voice():
    from processors.piper_tts import SharedPiperVoice

    return SharedPiperVoice.bundled()


@functools.cache
def speech_pcm16(text: str, sample_rate: int = 16000, pad_secs: float = 0.3) -> bytes:
    """`text` spoken by Piper as mono 16-bit PCM at `sample_rate`, padded with silence."""
    voice = _voice()
    audio = b"".join(chunk.audio_int16_bytes for chunk in voice.synthesize(text))
    samples = np.frombuffer(audio, dtype=np.int16).astype(np.float32)
    resampled = soxr.resample(samples, voice.config.sample_rate, sample_rate)
    pad = np.zeros(int(pad_secs * sample_rate), dtype=np.float32)
    pcm = np.concatenate([pad, resampled, pad])
    return np.clip(pcm, -32768, 32767).astype(np.int16).tobytes()


def silence_pcm16(seconds: float, sample_rate: int = 16000) -> bytes:
    return bytes(2 * int(seconds * sample_rate))


def words(text: str) -> list[str]:
    """The words of `text`, lower-cased, without punctuation; a hyphen joins ("to-morrow" is
    "tomorrow", a spelling the offline STT sometimes uses)."""
    return re.sub(r"[^a-z0-9' ]", " ", text.lower().replace("-", "")).split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level edit distance divided by the reference length."""
    ref, hyp = words(reference), words(hypothesis)
    distances = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, 1):
        previous, distances[0] = distances[0], i
        for j, hyp_word in enumerate(hyp, 1):
            previous, distances[j] = (
                distances[j],
                min(distances[j] + 1, distances[j - 1] + 1, previous + (ref_word != hyp_word)),
            )
    return distances[len(hyp)] / max(len(ref), 1)
