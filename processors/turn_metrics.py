"""Per-turn latency: STT finalisation, LLM time to first token, TTS time to first byte, voice-to-voice."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from pipecat.frames.frames import BotStartedSpeakingFrame, Frame, MetricsFrame, VADUserStoppedSpeakingFrame
from pipecat.metrics.metrics import TTFBMetricsData
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.llm_service import LLMService
from pipecat.services.stt_service import STTService
from pipecat.services.tts_service import TTSService


@dataclass
class TurnMetrics:
    """Seconds per stage of one user turn; None where a stage reported nothing."""

    turn: int
    stt_finalisation_secs: float | None = None
    llm_ttft_secs: float | None = None
    tts_ttfb_secs: float | None = None
    voice_to_voice_secs: float | None = None

    def as_dict(self) -> dict:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}

    def describe(self) -> str:
        parts = [
            f"{k.removesuffix('_secs')}={v:.3f}s" for k, v in asdict(self).items() if isinstance(v, float)
        ]
        return f"turn {self.turn}: " + " ".join(parts)


class TurnMetricsProcessor(FrameProcessor):
    """Collects one `TurnMetrics` per user turn, from the end of the user's speech to the bot's first audio.

    Stage times are Pipecat's own TTFB metrics (`enable_metrics=True`): the STT's is the time
    from the VAD stop to the final transcript, the LLM's the time to the first token, the TTS's
    the time to the first audio byte. Voice-to-voice runs from the end of speech (the VAD stop
    minus its stop window) to `BotStartedSpeakingFrame` at the output transport.

    Place it right after the output transport: every frame it needs passes there. It runs in
    direct mode (no queue hop per frame) and passes every frame on unchanged; an observer
    would add a queue and a task switch per frame pushed anywhere in the pipeline.

    Event handlers available:

    - on_turn_metrics(processor, metrics: TurnMetrics)

    Example::

        Pipeline([..., transport.output(), TurnMetricsProcessor(), assistant_aggregator])
    """

    def __init__(self, **kwargs):
        super().__init__(**{"enable_direct_mode": True, **kwargs})
        self._turns = 0
        self._speech_ended_at: float | None = None
        self._current: TurnMetrics | None = None
        self._register_event_handler("on_turn_metrics")

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, VADUserStoppedSpeakingFrame):
            self._speech_ended_at = time.monotonic() - frame.stop_secs
            self._current = self._current or TurnMetrics(turn=self._turns + 1)
        elif isinstance(frame, MetricsFrame) and self._current is not None:
            self._record(frame)
        elif isinstance(frame, BotStartedSpeakingFrame) and self._current is not None:
            metrics, self._current = self._current, None
            metrics.voice_to_voice_secs = time.monotonic() - self._speech_ended_at
            self._turns = metrics.turn
            await self._call_event_handler("on_turn_metrics", metrics)

    def _record(self, frame: MetricsFrame) -> None:
        for item in frame.data:
            if not isinstance(item, TTFBMetricsData) or item.value <= 0:
                continue
            if _is(item.processor, STTService):
                self._current.stt_finalisation_secs = item.value
            elif _is(item.processor, LLMService) and self._current.llm_ttft_secs is None:
                self._current.llm_ttft_secs = item.value
            elif _is(item.processor, TTSService) and self._current.tts_ttfb_secs is None:
                self._current.tts_ttfb_secs = item.value


def _is(processor_name: str, kind: type) -> bool:
    """Metrics name their processor ("ResilientDeepgramSTTService#0"); match it to a service kind."""
    return any(cls.__name__ == processor_name.split("#")[0] for cls in _subclasses(kind))


def _subclasses(kind: type) -> list[type]:
    found = [kind]
    for sub in kind.__subclasses__():
        found.extend(_subclasses(sub))
    return found
