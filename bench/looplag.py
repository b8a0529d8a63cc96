"""Event-loop lag: how late a 100 ms sleep wakes up, the delay every task in that loop also suffers.

Sampled inside the servers (`bench/serve.py`, `/stats`) and inside the load generator, whose own
lag would otherwise pass for a stutter or a slow reply.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

LAG_PERIOD_SECS = 0.1


class LoopLagMonitor:
    """Run `run()` as a task on the loop to watch; read `percentile_ms()`."""

    def __init__(self) -> None:
        self.samples: list[float] = []

    async def run(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(LAG_PERIOD_SECS)
            self.samples.append(time.perf_counter() - started - LAG_PERIOD_SECS)

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(np.array(self.samples or [0.0]) * 1000, q))
