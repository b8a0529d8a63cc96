"""The time source of our timer-driven processors, injectable so tests can move time by hand."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Protocol


class Clock(Protocol):
    """What a timer needs: the time now, and a sleep that something else can cut short."""

    def now(self) -> float:
        """Seconds on a monotonic scale."""

    async def wait(self, seconds: float, wake: asyncio.Event) -> None:
        """Return after `seconds`, or as soon as `wake` is set, whichever comes first."""


class MonotonicClock:
    """The real clock: `time.monotonic` and the event loop's timers."""

    def now(self) -> float:
        return time.monotonic()

    async def wait(self, seconds: float, wake: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await wake.wait()


REAL_TIME = MonotonicClock()
