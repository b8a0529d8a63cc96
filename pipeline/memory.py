"""Give memory freed by ended sessions back to the operating system.

A session allocates many small objects (frames, audio buffers, model state). When it ends they
are freed, but glibc keeps the pages in its arenas, so the process's RSS after a burst of
sessions (or a flood of refused clients) stays at its peak and a pod looks like it leaks.
`malloc_trim` returns the free pages; it takes a few milliseconds, so it runs off the loop.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools

from loguru import logger


@functools.cache
def _malloc_trim():
    """glibc's `malloc_trim`, or None where the C library has none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


async def release_freed_memory() -> None:
    trim = _malloc_trim()
    if trim is None:
        return
    try:
        await asyncio.to_thread(trim, 0)
    except Exception as e:  # never let housekeeping break a session's ending
        logger.debug(f"malloc_trim failed: {e}")
