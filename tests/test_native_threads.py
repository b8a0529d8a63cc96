"""The server runs numpy's BLAS on one thread: a second one spins on the other core under load."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# Loads what a cloud-services server loads at start-up and reports the BLAS pools before and after.
START_UP = """
import asyncio, json
import numpy
from pipeline.native_threads import blas_threads
from pipeline.providers import Providers
from pipeline.resources import SharedResources
from pipeline.settings import Settings

before = blas_threads()
asyncio.run(SharedResources.load(Providers(stt="deepgram", llm="openai", tts="deepgram"), Settings()))
print(json.dumps([before, blas_threads()]))
"""


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one core: BLAS has one thread anyway")
def test_start_up_leaves_numpy_with_one_blas_thread():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENBLAS_", "OMP_", "MKL_"))}
    result = subprocess.run(
        [sys.executable, "-c", START_UP], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    before, after = json.loads(result.stdout.strip().splitlines()[-1])
    assert before and max(before) > 1, "numpy started with one BLAS thread: the test would show nothing"
    assert after == [1] * len(before)
