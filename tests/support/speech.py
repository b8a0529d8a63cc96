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


def scaled_pcm16(pcm16: bytes, gain: float) -> bytes:
    samples = np.frombuffer(pcm16, dtype=np.int16).astype(np.float64) * gain
    return np.clip(np.round(samples), -32768, 32767).astype(np.int16).tobytes()


def noise_pcm16(seconds: float, sample_rate: int, level: float, seed: int = 7) -> bytes:
    """White noise with a standard deviation of `level` (of 32768), the same for the same seed."""
    samples = np.random.default_rng(seed).standard_normal(int(seconds * sample_rate)) * level
    return np.clip(samples, -32768, 32767).astype(np.int16).tobytes()


def levels_pcm16(sample_rate: int = 16000) -> bytes:
    """Speech at several levels, with digital silence, room noise and a clipping burst between.

    A quiet phrase sits around the VAD's volume gate (min_volume 0.6, -50 LUFS), and loud audio
    is followed by near-silence, where a loudness filter's memory of the loud part is largest.
    """
    speech = speech_pcm16("What is the capital of France?", sample_rate)
    other = speech_pcm16("Hello there, how are you today?", sample_rate)
    return (
        silence_pcm16(0.3, sample_rate)
        + speech
        + silence_pcm16(0.5, sample_rate)
        + noise_pcm16(1.0, sample_rate, 30)
        + scaled_pcm16(other, 0.03)
        + noise_pcm16(0.7, sample_rate, 3, seed=8)
        + noise_pcm16(0.5, sample_rate, 30000)
        + silence_pcm16(0.45, sample_rate)
        + scaled_pcm16(speech, 0.1)
        + noise_pcm16(0.3, sample_rate, 1, seed=9)
    )


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
