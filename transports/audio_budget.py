"""Input audio may not outrun real time for long: a flood is refused, a recording is fine."""

from __future__ import annotations

import time
from collections.abc import Callable

# A whole recording may arrive at once; beyond this much audio ahead of the wall clock, refuse.
BURST_SECS = 120.0


class AudioBudget:
    """Allows as much audio as has elapsed since the session started, plus a burst.

    Example::

        budget = AudioBudget()
        if not budget.allow(seconds_of_audio): refuse()
    """

    def __init__(self, burst_secs: float = BURST_SECS, clock: Callable[[], float] = time.monotonic):
        self._burst = burst_secs
        self._clock = clock
        self._started = clock()
        self._received = 0.0

    @property
    def received_secs(self) -> float:
        """Seconds of audio allowed so far (what push-to-talk is ordered after)."""
        return self._received

    def remaining(self) -> float:
        """Seconds of audio that would be allowed now."""
        return max(0.0, self._clock() - self._started + self._burst - self._received)

    def allow(self, seconds: float) -> bool:
        if self._received + seconds > self._clock() - self._started + self._burst:
            return False
        self._received += seconds
        return True
