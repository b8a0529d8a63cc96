"""A hard cap on a session's length, ending it with the goodbye like every other ending."""

from __future__ import annotations

from loguru import logger

from processors.deadline_timer import DeadlineTimerProcessor
from processors.frames import MaxDurationFrame


class MaxDurationProcessor(DeadlineTimerProcessor):
    """`max_secs` after the start, interrupts whatever the bot is doing and pushes `MaxDurationFrame`.

    Example::

        MaxDurationProcessor(max_secs=600, goodbye="We have reached the time limit. Goodbye!")
    """

    def __init__(self, *, max_secs: float, goodbye: str = "", **kwargs):
        super().__init__(**kwargs)
        self._max_secs = max_secs
        self._goodbye = goodbye
        self._started = self._clock.now()

    def on_start(self) -> None:
        self._started = self._clock.now()

    def seconds_until_due(self) -> float:
        if self._max_secs <= 0:
            return float("inf")
        return self._started + self._max_secs - self._clock.now()

    async def on_due(self) -> bool:
        logger.info(f"{self}: session reached its {self._max_secs:g}s cap, ending it")
        await self.broadcast_interruption()
        await self.push_frame(
            MaxDurationFrame(
                goodbye=self._goodbye, detail=f"the call reached its {self._max_secs:g}-second limit"
            )
        )
        return False
