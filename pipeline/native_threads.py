"""One BLAS thread per process: numpy's OpenBLAS would otherwise spin a worker on the other core.

OpenBLAS splits a product across all cores and its idle workers then busy-wait for the next
one. Under load the VAD's loudness (per 32 ms window of every call) and smart-turn's mel
features (per turn) keep that worker spinning: 32 % of a core at 30 calls on 2 cores, taken
from the event loop (bench/README.md). Every product here is small; none gains from a second
thread. ONNX Runtime, Moonshine and llama.cpp keep their own thread settings.
"""

from __future__ import annotations

import numpy  # noqa: F401  (loads numpy's BLAS, so that its pool exists to be limited)
from threadpoolctl import threadpool_info, threadpool_limits


def limit_blas_threads() -> None:
    """Run numpy's BLAS on the calling thread only, for the rest of the process."""
    threadpool_limits(limits=1, user_api="blas")


def blas_threads() -> list[int]:
    """Thread count of each BLAS library loaded in the process (what the tests check)."""
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
