"""The services a server runs with, once `auto` is resolved, and what that stack can carry.

Its own module so that service selection (`pipeline.services`) and the loaded models
(`pipeline.resources`) can both name it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Concrete = Literal["deepgram", "openai", "local"]


# Measured on 2 cores (bench/README.md, "Results" and "Capacity per stack"): a session holds if
# its replies come in time and play without a stutter at the caller; with cloud services 10
# held on a busy shared machine (at 15 one reply in 25 stuttered) and 20 on a quiet one: the
# lower figure, since refusing a caller beats a stuttering reply. The embedded stack runs
# speech recognition, the LLM and speech synthesis on the CPU
# (`python -m bench.run --offline --offline-sweep 2,3`: 2 hold, at 3 a tenth go unanswered).
CLOUD_STACK_CAPACITY = 10
OFFLINE_STACK_CAPACITY = 2


@dataclass(frozen=True)
class Providers:
    """The concrete provider of each stage after `auto` has been resolved."""

    stt: Concrete
    llm: Concrete
    tts: Concrete

    @property
    def needs_offline_stack(self) -> bool:
        return "local" in (self.stt, self.llm, self.tts)

    @property
    def measured_capacity(self) -> int:
        """Sessions one process holds in real time with these services (bench/README.md):
        the default for VOICEBOT_MAX_SESSIONS, so a full server refuses instead of degrading."""
        return OFFLINE_STACK_CAPACITY if self.needs_offline_stack else CLOUD_STACK_CAPACITY

    def describe(self) -> str:
        return f"STT={self.stt} LLM={self.llm} TTS={self.tts}"
