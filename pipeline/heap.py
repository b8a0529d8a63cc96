"""What exists once start-up is done is kept out of the garbage collector's full passes.

A full (generation 2) collection walks every object the collector tracks. After start-up most
of them never become garbage: modules, Pipecat's, NumPy's and ONNX Runtime's Python objects,
the models' wrappers. Under load those passes stopped the event loop for 35-140 ms at a time
(40 calls here, timed with `gc.callbacks`): long enough for a caller to hear a gap in a reply.
`gc.freeze()` moves them to a permanent generation that collections skip; what calls create
is collected as before.
"""

from __future__ import annotations

import gc


def freeze_start_up_objects() -> None:
    """Collect once, then exempt every object that survived from later collections."""
    gc.collect()  # garbage made during start-up is freed, not frozen
    gc.freeze()
