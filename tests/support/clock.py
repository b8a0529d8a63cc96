"""A clock that tests move by hand, for the timer-driven processors (processors/clock.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from pipecat.frames.frames import Frame, SystemFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor


class ManualClock:
    """Time stands still until `advance()` (timers that come due run) or `skip()` (they don't)."""

    def __init__(self, start: float = 1000.0):
        self._now = start
        self._sleepers: list[tuple[float, asyncio.Event]] = []

    def now(self) -> float:
        return self._now

    async def wait(self, seconds: float, wake: asyncio.Event) -> None:
        entry = (self._now + seconds, wake)
        self._sleepers.append(entry)
        try:
            await wake.wait()
        finally:
            self._sleepers.remove(entry)

    def skip(self, seconds: float) -> None:
        """Move time without waking anyone (for pure state objects)."""
        self._now += seconds

    async def advance(self, seconds: float, step: float = 0.05) -> None:
        """Move time forward in small steps; at each, timers that came due run to completion."""
        target = self._now + seconds
        while self._now < target - 1e-9:
            self._now = min(target, self._now + step)
            for deadline, wake in list(self._sleepers):
                if deadline <= self._now + 1e-9:
                    wake.set()
            for _ in range(20):  # let woken timers push their frames
                await asyncio.sleep(0)


@dataclass
class AdvanceClockFrame(SystemFrame):
    """In a test's frame list: this much time passes here."""

    seconds: float = 0.0


class ClockDriver(FrameProcessor):
    """First in a test pipeline: turns `AdvanceClockFrame`s into `clock.advance()`."""

    def __init__(self, clock: ManualClock, **kwargs):
        super().__init__(**{"enable_direct_mode": True, **kwargs})
        self._clock = clock

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, AdvanceClockFrame):
            await self._clock.advance(frame.seconds)
            return
        await self.push_frame(frame, direction)
