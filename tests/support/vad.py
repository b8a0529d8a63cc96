"""Running a VAD analyzer over a clip as a transport would, and reading where it hears speech."""

from __future__ import annotations

from pipecat.audio.vad.vad_analyzer import VADState

FRAME_SECS = 0.02  # transports deliver 20 ms frames


def frames(pcm16: bytes, sample_rate: int = 16000) -> list[bytes]:
    size = int(sample_rate * FRAME_SECS) * 2
    return [pcm16[i : i + size] for i in range(0, len(pcm16), size)]


async def run_alone(analyzer, pcm16: bytes, sample_rate: int = 16000) -> list[VADState]:
    """The analyzer's state after each 20 ms frame of the clip."""
    return [await analyzer.analyze_audio(frame) for frame in frames(pcm16, sample_rate)]


def speech_turns(states: list[VADState]) -> list[tuple[int, VADState]]:
    """(frame index, state) where the VAD starts or stops hearing speech."""
    turns, last = [], VADState.QUIET
    for i, state in enumerate(states):
        if state in (VADState.SPEAKING, VADState.QUIET) and state != last:
            turns.append((i, state))
            last = state
    return turns
