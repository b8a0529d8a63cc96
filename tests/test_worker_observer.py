"""LeanWorkerObserver: every observer gets the events it acts on, as with Pipecat's proxy."""

from __future__ import annotations

import asyncio

import pytest
from pipecat.frames.frames import (
    EndFrame,
    Frame,
    InputAudioRawFrame,
    OutputTransportMessageUrgentFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import BaseObserver, FrameProcessed, FramePushed
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner

from pipeline.worker_observer import LeanWorkerObserver, use_lean_observer

Event = tuple[str, bool | None, str]  # frame type, first push (None: processed), direction


class PushRecorder(BaseObserver):
    """Notes each push it is told about; says whether it reads the caller's audio."""

    def __init__(self, *, reads_input_audio: bool, **kwargs):
        super().__init__(**kwargs)
        self.reads_input_audio = reads_input_audio
        self.events: list[Event] = []

    async def on_push_frame(self, data: FramePushed):
        self.events.append((type(data.frame).__name__, data.first_push, data.direction.name))


class ProcessRecorder(PushRecorder):
    """Notes each push and each frame a processor handled (`on_process_frame`)."""

    async def on_process_frame(self, data: FrameProcessed):
        self.events.append((type(data.frame).__name__, None, data.direction.name))


class Passthrough(FrameProcessor):
    def __init__(self):
        super().__init__(enable_direct_mode=True)

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)


def audio() -> InputAudioRawFrame:
    return InputAudioRawFrame(audio=bytes(640), sample_rate=16000, num_channels=1)


def turn() -> list[Frame]:
    """A user turn as the STT's neighbours see it: audio, the VAD's start and stop, a transcript."""
    return [
        *(audio() for _ in range(5)),
        VADUserStartedSpeakingFrame(),
        *(audio() for _ in range(10)),
        VADUserStoppedSpeakingFrame(),
        TranscriptionFrame("What is the capital of France?", "", "2026-12-02T00:00:00Z"),
        *(audio() for _ in range(3)),
    ]


async def run(observers: list[BaseObserver], *, lean: bool) -> list[str]:
    """The frames of a turn through three processors with these observers (and the worker's RTVI
    observer); returns the RTVI messages that reached the end of the pipeline."""
    worker = PipelineWorker(
        Pipeline([Passthrough(), Passthrough(), Passthrough()]),
        observers=list(observers),  # the worker appends its own to the list it gets
        idle_timeout_secs=None,
        cancel_on_idle_timeout=False,
        enable_turn_tracking=False,
    )
    if lean:
        use_lean_observer(worker)
    messages: list[str] = []

    @worker.event_handler("on_frame_reached_downstream")
    async def _note(worker, frame):
        messages.append(str(frame.message))

    worker.set_reached_downstream_filter((OutputTransportMessageUrgentFrame,))
    runner = WorkerRunner(handle_sigint=False, handle_sigterm=False)
    await runner.add_workers(worker)
    await worker.queue_frames([*turn(), EndFrame()])
    async with asyncio.timeout(10):
        await runner.run()
    return messages


def without_rtvi(events: list[Event]) -> list[Event]:
    return [e for e in events if e[0] != OutputTransportMessageUrgentFrame.__name__]


async def test_observers_get_every_event_they_act_on_and_no_audio_they_ignore():
    theirs = [ProcessRecorder(reads_input_audio=False), PushRecorder(reads_input_audio=False)]
    ours = [ProcessRecorder(reads_input_audio=False), PushRecorder(reads_input_audio=False)]
    their_messages = await run(theirs, lean=False)
    our_messages = await run(ours, lean=True)

    assert our_messages == their_messages
    assert any("user-transcription" in m for m in our_messages)  # RTVI saw the transcript
    for mine, reference in zip(ours, theirs, strict=True):
        # RTVI's messages are the same (above) but may enter the pipeline earlier: its observer is
        # woken for fewer events, so it reaches them sooner. Everything else comes in the same order.
        mine_events, reference_events = without_rtvi(mine.events), without_rtvi(reference.events)
        processed = [e for e in reference_events if e[1] is None]
        assert [e for e in mine_events if e[1] is None] == processed  # all FrameProcessed, audio too
        pushes = [e for e in reference_events if e[1] is not None]
        assert [e for e in mine_events if e[1] is not None] == [
            e for e in pushes if e[0] != "InputAudioRawFrame"
        ]
    assert any(e[0] == "InputAudioRawFrame" and e[1] is None for e in ours[0].events)
    assert not any(e[1] is None for e in ours[1].events)  # it has no on_process_frame


@pytest.mark.parametrize("every_push", [True, False])
async def test_an_observer_that_may_read_audio_gets_all_of_it(every_push):
    theirs = [PushRecorder(reads_input_audio=True, observe_every_push=every_push)]
    ours = [PushRecorder(reads_input_audio=True, observe_every_push=every_push)]
    assert await run(ours, lean=True) == await run(theirs, lean=False)
    assert without_rtvi(ours[0].events) == without_rtvi(theirs[0].events)
    assert sum(e[0] == "InputAudioRawFrame" for e in ours[0].events) >= 18


def test_the_lean_proxy_keeps_the_workers_observers():
    observer = PushRecorder(reads_input_audio=False)
    worker = PipelineWorker(Pipeline([Passthrough()]), observers=[observer])
    observers = list(worker._observer._observers)  # ours and the worker's own (RTVI, ...)
    use_lean_observer(worker)
    assert isinstance(worker._observer, LeanWorkerObserver)
    assert worker._observer._observers == observers
    assert observer in observers and len(observers) > 1
