"""RTVI's `user-llm-text` for the turns the LLM really answered, never for a withdrawn speculation.

Pipecat's `RTVIObserver` tells the client what the user said to the LLM from each
`LLMContextFrame`, including the provisional one a speculative reply runs on. When that
speculation is withdrawn (the final transcript said something else, the user resumed), the
client would be told the user asked something the conversation never contains. This observer
holds a speculative context's message until the turn settles: sent when the turn ends with the
speculation kept, dropped when it is withdrawn or a new context replaces it.
"""

from __future__ import annotations

from pipecat.frames.frames import EagerEndOfTurnCancelFrame, LLMContextFrame, UserStoppedSpeakingFrame
from pipecat.observers.base_observer import FramePushed
from pipecat.processors.frameworks.rtvi import RTVIObserver, RTVIObserverParams, RTVIProcessor


class SettledTurnsRTVIObserver(RTVIObserver):
    """`RTVIObserver` that reports a speculative context's user text only once the turn keeps it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._speculative: FramePushed | None = None  # the context pushed for the speculation in flight

    async def on_push_frame(self, data: FramePushed):
        frame = data.frame
        if isinstance(frame, LLMContextFrame) and data.first_push:
            self._speculative = None  # a newer context: any speculation before it is settled
            if frame.speculation:
                self._speculative = data
                return
        elif isinstance(frame, EagerEndOfTurnCancelFrame):
            self._speculative = None
        elif isinstance(frame, UserStoppedSpeakingFrame) and self._speculative is not None:
            kept, self._speculative = self._speculative, None
            await super().on_push_frame(kept)
        await super().on_push_frame(data)


class SettledTurnsRTVIProcessor(RTVIProcessor):
    """Pipecat's `RTVIProcessor`, whose observer is a `SettledTurnsRTVIObserver`.

    Example::

        PipelineWorker(pipeline, rtvi_processor=SettledTurnsRTVIProcessor())
    """

    def create_rtvi_observer(self, *, params: RTVIObserverParams | None = None, **kwargs):
        return SettledTurnsRTVIObserver(self, params=params, **kwargs)
