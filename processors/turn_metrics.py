"""Per-turn latency (STT finalisation, LLM time to first token, TTS time to first byte, voice-to-voice)
and whether the reply was speculative: kept, or withdrawn and answered again."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import ClassVar, Literal

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    EagerEndOfTurnCancelFrame,
    LLMContextFrame,
    MetricsFrame,
    TranscriptionFrame,
    UserStoppedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.metrics.metrics import TTFBMetricsData
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.services.llm_service import LLMService
from pipecat.services.stt_service import STTService
from pipecat.services.tts_service import TTSService


@dataclass
class TurnMetrics:
    """Seconds per stage of one user turn; None where a stage reported nothing.

    `speculation`: None when no reply was started before the turn ended; "kept" when the reply
    heard is the one started at the VAD's stop; "withdrawn" when the turn's speculative replies
    were all dropped (the user resumed, or the final transcript differed) and the turn was
    answered from the final transcript. `speculations_withdrawn` counts the dropped ones.
    """

    turn: int
    stt_finalisation_secs: float | None = None
    llm_ttft_secs: float | None = None
    tts_ttfb_secs: float | None = None
    voice_to_voice_secs: float | None = None
    speculation: Literal["kept", "withdrawn"] | None = None
    speculations_withdrawn: int = 0

    def as_dict(self) -> dict:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}

    def describe(self) -> str:
        parts = [
            f"{k.removesuffix('_secs')}={v:.3f}s" for k, v in asdict(self).items() if isinstance(v, float)
        ]
        if self.speculation is not None:
            parts.append(f"speculation={self.speculation}")
        return f"turn {self.turn}: " + " ".join(parts)


class TurnMetricsObserver(BaseObserver):
    """Collects one `TurnMetrics` per user turn, from the end of the user's speech to the bot's first audio.

    STT finalisation is measured here: end of speech to the STT's first final transcript
    (Pipecat reports its own STT figure on a 2 s timer, often after the reply has started). The
    LLM's time to first token and the TTS's time to first byte are Pipecat's TTFB metrics
    (`enable_metrics=True`). Voice-to-voice runs from the end of speech (the VAD stop
    minus its stop window) to `BotStartedSpeakingFrame` at the output transport.

    Speculation is read from the frames that carry it: a speculative `LLMContextFrame` starts
    one, an `EagerEndOfTurnCancelFrame` withdraws it (its LLM figure is dropped with it), and a
    `UserStoppedSpeakingFrame` with one still in flight has kept it.

    Event handlers available:

    - on_turn_metrics(observer, metrics: TurnMetrics)

    Example::

        observer = TurnMetricsObserver()
        worker = PipelineWorker(pipeline, observers=[observer], params=PipelineParams(enable_metrics=True))
    """

    reads_input_audio: ClassVar[bool] = False  # LeanWorkerObserver spares it the caller's audio

    def __init__(self, **kwargs):
        super().__init__(**{"observe_every_push": False, **kwargs})  # first pushes are all it reads
        self._turns = 0
        self._speech_ended_at: float | None = None
        self._current: TurnMetrics | None = None
        self._speculating = False
        self._register_event_handler("on_turn_metrics")

    async def on_push_frame(self, data: FramePushed):
        frame = data.frame
        if isinstance(frame, VADUserStoppedSpeakingFrame):
            self._speech_ended_at = time.monotonic() - frame.stop_secs
            self._current = self._current or TurnMetrics(turn=self._turns + 1)
        elif isinstance(frame, TranscriptionFrame) and isinstance(data.source, STTService):
            if self._current is not None and self._current.stt_finalisation_secs is None:
                self._current.stt_finalisation_secs = max(0.0, time.monotonic() - self._speech_ended_at)
        elif isinstance(frame, MetricsFrame) and self._current is not None:
            self._record(data.source, frame)
        elif isinstance(frame, LLMContextFrame) and frame.speculation:
            self._speculating = True
        elif isinstance(frame, EagerEndOfTurnCancelFrame) and self._speculating:
            self._speculating = False  # a broadcast comes as two frames: count it once
            if self._current is not None:
                self._current.speculation = "withdrawn"
                self._current.speculations_withdrawn += 1
                self._current.llm_ttft_secs = None  # the withdrawn inference's
        elif isinstance(frame, UserStoppedSpeakingFrame) and self._speculating:
            self._speculating = False
            if self._current is not None:
                self._current.speculation = "kept"
        elif isinstance(frame, BotStartedSpeakingFrame) and self._current is not None:
            metrics, self._current = self._current, None
            metrics.voice_to_voice_secs = time.monotonic() - self._speech_ended_at
            self._turns = metrics.turn
            await self._call_event_handler("on_turn_metrics", metrics)

    def _record(self, source, frame: MetricsFrame) -> None:
        for item in frame.data:
            if not isinstance(item, TTFBMetricsData) or item.value <= 0:
                continue
            if isinstance(source, LLMService) and self._current.llm_ttft_secs is None:
                self._current.llm_ttft_secs = item.value
            elif isinstance(source, TTSService) and self._current.tts_ttfb_secs is None:
                self._current.tts_ttfb_secs = item.value
