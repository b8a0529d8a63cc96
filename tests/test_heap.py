"""After start-up the garbage collector's full passes skip what start-up loaded: walking it
stopped the event loop for 35-140 ms at a time under load (pipeline/heap.py)."""

from __future__ import annotations

import json
import subprocess
import sys

# Loads what a cloud-services server loads at start-up and what its first call needs, then reports
# what a full pass would walk.
START_UP = """
import asyncio, gc, json
from pipeline.providers import Providers
from pipeline.resources import SharedResources
from pipeline.settings import Settings

asyncio.run(SharedResources.load(Providers(stt="deepgram", llm="openai", tts="deepgram"), Settings()))
from pipeline.services import build_llm, build_stt, build_tts  # what the first call builds
import processors.deepgram_stt, processors.deepgram_tts, processors.resilient_llm
gc.collect()
print(json.dumps({"walked": len(gc.get_objects()), "frozen": gc.get_freeze_count()}))
"""


def test_a_full_collection_after_start_up_walks_a_small_part_of_the_heap():
    result = subprocess.run(
        [sys.executable, "-c", START_UP], capture_output=True, text=True, timeout=120, check=True
    )
    heap = json.loads(result.stdout.strip().splitlines()[-1])

    assert heap["walked"] < heap["frozen"] / 10, heap
