"""A frame processor with one long-lived timer task: the shared skeleton of our session clocks."""

from __future__ import annotations

import asyncio

from pipecat.frames.frames import CancelFrame, EndFrame, Frame, StartFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from processors.clock import REAL_TIME, Clock


class DeadlineTimerProcessor(FrameProcessor):
    """Passes every frame through; a single task sleeps until `seconds_until_due()` reaches zero.

    Subclasses say when they are due and act in `on_due()`. The task sleeps until the deadline
    it last computed, then re-checks. A deadline may move later while it sleeps (the re-check
    finds that and sleeps again); whatever can move it earlier calls `reschedule()`, which wakes
    the task to re-check at once. No per-frame timer resets, no polling.

    Time comes from `clock` (the real one by default; tests inject one they move by hand).
    """

    def __init__(self, *, clock: Clock = REAL_TIME, **kwargs):
        super().__init__(**{"enable_direct_mode": True, **kwargs})  # no queue hop per frame
        self._clock = clock
        self._timer_task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._timer_allowed = False  # between the StartFrame and the end: the timer may run

    def on_start(self) -> None:
        """The session started; reset clocks."""

    def observe(self, frame: Frame, direction: FrameDirection) -> None:
        """Look at a frame passing through (either direction)."""

    async def forward(self, frame: Frame, direction: FrameDirection) -> None:
        """Pass on a frame other than the start and the end (a gate may hold or drop some)."""
        await self.push_frame(frame, direction)

    def seconds_until_due(self) -> float:
        """Seconds until `on_due()` should run; `float('inf')` when the timer is off."""
        raise NotImplementedError

    async def on_due(self) -> bool:
        """Act on the deadline. Return True to keep the timer running, False to stop it for good."""
        raise NotImplementedError

    def reschedule(self) -> None:
        """Something changed that may bring the deadline earlier: re-check it now (starting the
        timer if the session has started and it was off until now)."""
        self._wake.set()
        if self._timer_allowed and self._timer_task is None and self.seconds_until_due() != float("inf"):
            self._timer_task = self.create_task(self._run_timer(), name=f"{self.name}::timer")

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame):
            await self.push_frame(frame, direction)
            self.on_start()
            self._timer_allowed = True
            self.reschedule()
            return
        if isinstance(frame, EndFrame | CancelFrame):
            self._timer_allowed = False
            await self._stop_timer()
            await self.push_frame(frame, direction)
            return
        self.observe(frame, direction)
        await self.forward(frame, direction)

    async def _run_timer(self) -> None:
        while True:
            self._wake.clear()  # before reading the deadline: a change after this wakes us
            due_in = self.seconds_until_due()
            if due_in <= 0:
                if not await self.on_due():
                    return
                continue
            await self._clock.wait(min(due_in, 3600.0), self._wake)

    async def _stop_timer(self) -> None:
        task, self._timer_task = self._timer_task, None
        if task is not None and not task.done():
            await self.cancel_task(task)

    async def cleanup(self):
        await super().cleanup()
        self._timer_allowed = False
        await self._stop_timer()
