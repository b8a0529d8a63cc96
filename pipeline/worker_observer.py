"""Pipecat's observer proxy, without waking observers for events they do nothing with.

`PipelineWorker` hands its observers every event through a `WorkerObserver`: each event is put
on each observer's own queue and handled by that observer's own task. Two kinds of event are
the bulk and, in our sessions, read by nobody: `FrameProcessed` (every frame, at every
processor: no observer of ours or Pipecat's RTVI observer implements `on_process_frame`) and the
pushes of the caller's audio (50 frames a second up to the VAD and 10 after it, each pushed by
every processor up to the user aggregator; RTVI ignores audio unless it reports audio levels,
and ours read text and speaking state only). Each costs a queue put, a task wake-up and a call
that returns at once.
"""

from __future__ import annotations

from pipecat.frames.frames import InputAudioRawFrame
from pipecat.observers.base_observer import BaseObserver, FrameProcessed, FramePushed
from pipecat.pipeline.worker import PipelineWorker
from pipecat.pipeline.worker_observer import WorkerObserver
from pipecat.processors.frameworks.rtvi.observer import RTVIObserver


def reads_processed_frames(observer: BaseObserver) -> bool:
    """Whether the observer implements `on_process_frame` (`BaseObserver`'s does nothing)."""
    return type(observer).on_process_frame is not BaseObserver.on_process_frame


def reads_input_audio(observer: BaseObserver) -> bool:
    """Whether the observer may act on a push of the caller's audio.

    RTVI's returns at once for audio unless it reports audio levels; ours say so with a
    `reads_input_audio = False` class attribute. Any other observer is assumed to read it.
    """
    if isinstance(observer, RTVIObserver):
        params = observer._params  # private: see tests/test_pipecat_contract.py
        return params.user_audio_level_enabled or params.bot_audio_level_enabled
    return getattr(observer, "reads_input_audio", True)


class LeanWorkerObserver(WorkerObserver):
    """`WorkerObserver` that queues an event only for the observers that act on it.

    - `on_process_frame`: only observers that implement it get the event.
    - `on_push_frame` of an `InputAudioRawFrame`: dropped unless some observer reads input
      audio (then Pipecat's own handling, for all of them).
    - Everything else as in Pipecat, in the same order.

    Example::

        use_lean_observer(worker)
    """

    async def on_process_frame(self, data: FrameProcessed):
        for proxy in (self._proxies or {}).values():
            if reads_processed_frames(proxy.observer):
                await proxy.queue.put(data)

    async def on_push_frame(self, data: FramePushed):
        if isinstance(data.frame, InputAudioRawFrame) and not any(
            reads_input_audio(proxy.observer) for proxy in (self._proxies or {}).values()
        ):
            return
        await super().on_push_frame(data)


def use_lean_observer(worker: PipelineWorker) -> None:
    """Swap the worker's observer proxy for a `LeanWorkerObserver` with the same observers.

    Call it right after building the worker, before it runs: the worker hands its proxy to the
    processors when it starts (`PipelineWorker._observer`, private: see the contract test).
    """
    worker._observer = LeanWorkerObserver(observers=worker._observer._observers)
