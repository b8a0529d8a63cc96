"""How fast the faked services answer: zero-delay (measures the pipeline alone) or realistic.

Both servers always run against the same fakes with the same profile. Where each realistic
figure comes from is in bench/README.md ("Service delays").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ServiceDelays:
    """Timing of the Deepgram and OpenAI fakes, in seconds."""

    stt_interim_every: float  # interim results while the user speaks, per this much audio
    stt_final: float  # Deepgram `Finalize` → its final result
    llm_first_token: float  # request → first content token
    llm_token_interval: float  # between tokens (1/tokens per second)
    tts_first_byte: float  # Deepgram `Flush` → first audio of that sentence

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


PROFILES = {
    # The pipeline alone: services answer at once (interim results as often as the second,
    # independent harness of issue 17 sent them).
    "zero": ServiceDelays(0.5, 0.0, 0.0, 0.0, 0.0),
    # Published figures for Deepgram nova-3 / gpt-4o-mini-class LLMs / Deepgram Aura-2.
    "realistic": ServiceDelays(0.25, 0.12, 0.30, 1 / 50, 0.20),
}
