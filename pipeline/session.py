"""A voice session: the one place where a session's pipeline is assembled, for any transport.

transport in → VAD (Silero) → push-to-talk gate → audio joiner (20 ms frames into 100 ms; the
offline STT takes them before it) → STT → eager end of turn → user aggregator
(smart-turn) → client audio ticker → LLM → conversation tracker → [idle, silence, max duration,
session end] → TTS → transport out → assistant aggregator, run by one `PipelineWorker` and its
own `WorkerRunner`.
Input audio ends at the ticker (a tick every 0.25 s says it still flows). Our processors sit
after the LLM: there they see client input (messages, audio ticks), LLM responses, and bot
speech (pushed upstream by the output transport), and what they push reaches the TTS.

How a session ends
==================
Two phases, each in one place.

1. Inside the pipeline, deciding and speaking the end. Whatever ends a session pushes one
   `EndSessionFrame` (processors/frames.py) with its `EndReason`:
   - the clocks (processors/idle_timeout.py, silence_timeout.py, max_duration.py), which read
     the session's one `ConversationState` (processors/conversation_state.py, fed by
     processors/conversation_tracker.py);
   - `VoiceSession.end(reason)` below, from outside (server shutdown, a broken service, the
     local bot's Ctrl-C);
   - the client asking to end (`ClientHangupFrame`, from a serializer: the simple protocol's
     `hangup`, Twilio's `stop`).
   processors/session_end.py `SessionEndProcessor` takes the first one and pushes the goodbye,
   the `SessionEndedMessageFrame` (an RTVI server message on /ws, a `mark` on Twilio; the
   simple protocol says `end` in its finish step) and an `EndWorkerFrame` that queues behind the
   audio, so the pipeline ends only when the goodbye has been sent. A client that is *gone*
   (the socket dropped) gets none of that: `VoiceSession.client_gone()` ends at once.
2. After the pipeline, finishing the connection. `VoiceSession.run()` returns the reason and
   the route (bots/server.py) runs its transport's finish step on the socket Pipecat has let
   go of (transports/websocket_session.py `HeldWebSocket`: Pipecat's close does nothing):
   - /ws: transports/browser.py `finish_browser_session` (the page hangs up once it has played
     the goodbye, bounded), then close 1000 + reason;
   - /ws/simple: transports/simple_protocol.py `finish_simple_session` (`end` + reason as the
     last message), then close 1000 + reason;
   - Twilio: transports/twilio.py `finish_call` (Twilio's echo of the end mark: the caller heard
     the goodbye; then the REST hang-up), then close 1000 + reason.
"""

from __future__ import annotations

import time
import uuid

from loguru import logger
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.frames.frames import EndFrame, ErrorFrame, InterruptionFrame, TTSSpeakFrame
from pipecat.observers.base_observer import BaseObserver
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker, ProcessorUnusablePolicy
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.services.stt_service import STTService
from pipecat.transports.base_transport import BaseTransport
from pipecat.turns.user_stop.turn_analyzer_user_turn_stop_strategy import TurnAnalyzerUserTurnStopStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies, default_user_turn_start_strategies
from pipecat.workers.runner import WorkerRunner

from pipeline import end_conversation, metrics
from pipeline.profiles import DEFAULT_BOT, Bot
from pipeline.providers import Providers
from pipeline.resources import SharedResources
from pipeline.services import build_llm, build_stt, build_tts, describe_failed_service
from pipeline.settings import Settings
from pipeline.worker_observer import use_lean_observer
from processors.client_audio_ticker import ClientAudioTicker
from processors.conversation_state import ConversationState
from processors.conversation_text_frames import ConversationTextFrames
from processors.conversation_tracker import ConversationTracker
from processors.frames import EndReason, EndSessionFrame, TurnMetricsMessageFrame
from processors.idle_timeout import IdleTimeoutProcessor
from processors.input_audio_coalescer import InputAudioCoalescer
from processors.max_duration import MaxDurationProcessor
from processors.moonshine_stt import MoonshineSTTService
from processors.muted_while_ending import MutedWhileEndingStrategy
from processors.push_to_talk import PushToTalkGate, PushToTalkUserTurnStopStrategy
from processors.session_end import SessionEndProcessor
from processors.settled_turns_rtvi import SettledTurnsRTVIProcessor
from processors.shared_models import SharedSileroVADAnalyzer, SharedSmartTurnAnalyzer
from processors.silence_timeout import SilenceTimeoutProcessor
from processors.speculative_turn_stop import SpeculativeTurnAnalyzerUserTurnStopStrategy
from processors.transcript_log import TranscriptLog
from processors.turn_metrics import TurnMetrics, TurnMetricsObserver

INPUT_SAMPLE_RATE = 16000


def audio_to_transcripts(stt: STTService) -> list[FrameProcessor]:
    """The STT with the `InputAudioCoalescer` beside it: after the VAD the caller's audio goes on
    in frames of up to 100 ms (five times fewer hops). The offline STT finds pauses in the 20 ms
    frames itself, to transcribe while the user still speaks, so it gets them before they are
    joined; any other STT after."""
    if isinstance(stt, MoonshineSTTService):
        return [stt, InputAudioCoalescer()]
    return [InputAudioCoalescer(), stt]


class VoiceSession:
    """One conversation: its worker, its identity, and how it ends.

    Example::

        session = VoiceSession.build(transport, settings=s, providers=p, resources=r)
        reason = await session.run()          # returns when the pipeline has ended
    """

    def __init__(
        self,
        worker: PipelineWorker,
        session_id: str,
        settings: Settings,
        providers: Providers,
        bot_name: str = DEFAULT_BOT,
    ):
        self.worker = worker
        self.bot_name = bot_name
        self._providers = providers
        self.session_id = session_id
        self.end_reason: EndReason | None = None
        self._greeting = settings.bot_greeting
        self._goodbye = settings.goodbye
        self._started = time.monotonic()
        self._turns = 0
        self._client_gone = False

    @classmethod
    def build(
        cls,
        transport: BaseTransport,
        *,
        settings: Settings,
        providers: Providers,
        resources: SharedResources,
        output_sample_rate: int = 24000,
        session_id: str | None = None,
        input_processors: list[FrameProcessor] | None = None,
        observers: list[BaseObserver] | None = None,
        text_frames: bool = False,
        bot: Bot | None = None,
    ) -> VoiceSession:
        """Assemble a session of `bot` (default: the environment's own profile, from `settings`);
        `input_processors` go right after the transport's input. With `text_frames`, the
        conversation's text reaches the serializer as typed frames (`BotTextMessageFrame`,
        `UserTranscriptMessageFrame`), for protocols that carry text."""
        session_id = session_id or uuid.uuid4().hex[:12]
        bot = bot or Bot.from_settings(settings)
        settings = bot.settings
        ends_by_tool = end_conversation.uses_tool(settings, providers)
        if ends_by_tool:
            settings = end_conversation.with_instruction(settings)
        stt = build_stt(providers, settings, resources)
        llm = build_llm(providers, settings, resources)
        if ends_by_tool:
            end_conversation.register_end_conversation(llm, goodbye=settings.goodbye)
        tts = build_tts(providers, settings, resources)

        # Pipecat's defaults (Silero VAD, smart-turn v3 stop strategy) on per-process models.
        # Speculative replies: the LLM starts at the VAD's stop, held by its SpeculationGate
        # until the turn analyzer and the final transcript confirm the turn.
        vad = SharedSileroVADAnalyzer(params=VADParams(stop_secs=settings.vad_stop_secs))
        # The goodbye phrase detector judges only confirmed turns, and a kept speculation sends
        # none: with the detector (an LLM without tools), turns are not speculated on.
        speculative = settings.speculative_replies and not end_conversation.uses_detector(settings, providers)
        turn_stop = (
            SpeculativeTurnAnalyzerUserTurnStopStrategy if speculative else TurnAnalyzerUserTurnStopStrategy
        )
        turn_strategies = UserTurnStrategies(
            start=default_user_turn_start_strategies(),
            stop=[turn_stop(turn_analyzer=SharedSmartTurnAnalyzer()), PushToTalkUserTurnStopStrategy()],
        )
        user_aggregator, assistant_aggregator = LLMContextAggregatorPair(
            LLMContext(tools=end_conversation.end_conversation_tools()) if ends_by_tool else LLMContext(),
            user_params=LLMUserAggregatorParams(
                user_turn_strategies=turn_strategies, user_mute_strategies=[MutedWhileEndingStrategy()]
            ),
        )

        session_end = SessionEndProcessor()
        turn_metrics = TurnMetricsObserver()
        conversation = ConversationState()  # one per session, read by every clock
        pipeline = Pipeline(
            [
                transport.input(),
                *(input_processors or []),
                VADProcessor(vad_analyzer=vad, enable_direct_mode=True),
                PushToTalkGate(),
                *audio_to_transcripts(stt),
                user_aggregator,
                *end_conversation.goodbye_detector(settings, providers),
                ClientAudioTicker(),
                llm,
                ConversationTracker(conversation),
                IdleTimeoutProcessor(
                    state=conversation, timeout_secs=settings.idle_timeout_secs, goodbye=settings.goodbye
                ),
                SilenceTimeoutProcessor(
                    state=conversation,
                    timeout_secs=settings.silence_timeout_secs,
                    schedule=[(prompt.after_secs, prompt.say) for prompt in bot.silence_prompts],
                    goodbye=settings.goodbye,
                ),
                MaxDurationProcessor(max_secs=settings.max_session_secs, goodbye=settings.goodbye),
                session_end,
                tts,
                transport.output(),
                assistant_aggregator,
            ]
        )
        observers = list(observers or [])
        if settings.transcript_log_dir is not None:
            observers.append(TranscriptLog(settings.transcript_log_dir, session_id=session_id))
        worker = PipelineWorker(
            pipeline,
            observers=[turn_metrics, *observers],
            params=PipelineParams(
                audio_in_sample_rate=INPUT_SAMPLE_RATE,
                audio_out_sample_rate=output_sample_rate,
                enable_metrics=True,
                enable_usage_metrics=True,
            ),
            conversation_id=session_id,
            rtvi_processor=SettledTurnsRTVIProcessor(),  # no user-llm-text for withdrawn speculations
            enable_turn_tracking=False,  # nothing of ours reads it; it observes every frame
            # Pipecat's watchdog cancels the call with no goodbye; our processors own timeouts.
            idle_timeout_secs=None,
            cancel_on_idle_timeout=False,
            # A service that can no longer work (bad key, dead device) must not leave a deaf
            # or mute bot on the line; we end the session ourselves (see _on_error) so the
            # client is told why, through the same end path as every other ending.
            processor_unusable_policy=ProcessorUnusablePolicy.CONTINUE,
        )
        use_lean_observer(worker)  # observers are not woken for events they ignore
        if text_frames:
            worker.add_observer(ConversationTextFrames(worker.queue_frame))
        session = cls(worker, session_id, settings, providers, bot.name)
        session._wire(user_aggregator, session_end, turn_metrics)
        return session

    def _wire(
        self, user_aggregator, session_end: SessionEndProcessor, turn_metrics: TurnMetricsObserver
    ) -> None:
        @turn_metrics.event_handler("on_turn_metrics")
        async def _report_turn(observer, turn: TurnMetrics):
            logger.info(f"Session {self.session_id} {turn.describe()}")
            for stage, seconds in turn.as_dict().items():
                if stage.endswith("_secs") and seconds is not None:
                    metrics.TURN_LATENCY.labels(stage.removesuffix("_secs")).observe(seconds)
            metrics.SPECULATIVE_REPLIES.labels("withdrawn").inc(turn.speculations_withdrawn)
            if turn.speculation == "kept":
                metrics.SPECULATIVE_REPLIES.labels("kept").inc()
            await self.worker.queue_frame(TurnMetricsMessageFrame.for_metrics(turn.as_dict()))

        @session_end.event_handler("on_session_ending")
        async def _record_reason(processor, reason: EndReason):
            self.end_reason = self.end_reason or reason

        @self.worker.event_handler("on_pipeline_error")
        async def _on_error(worker, frame: ErrorFrame):
            metrics.SERVICE_ERRORS.labels(
                type(frame.processor).__name__ if frame.processor else "pipeline"
            ).inc()
            if frame.processor is not None and not frame.processor.is_usable and self.end_reason is None:
                service = describe_failed_service(frame.processor, self._providers)
                logger.error(f"Session {self.session_id}: {service} stopped working: {frame.error}")
                await self.end(EndReason.ERROR)

        @self.worker.event_handler("on_pipeline_started")
        async def _greet(worker, frame):
            if self._greeting:
                await worker.queue_frame(TTSSpeakFrame(self._greeting))

        @user_aggregator.event_handler("on_user_turn_stopped")
        async def _count_turn(aggregator, strategy, message):
            self._turns += 1

    async def on_client_disconnected(self, transport: BaseTransport, client) -> None:
        """Transport event handler: the peer closed the connection."""
        await self.client_gone()

    async def client_gone(self) -> None:
        """The connection dropped: drop what is in flight and end the pipeline at once, gracefully.

        No goodbye (nobody is listening) and no `CancelFrame`: an interruption empties the
        queues, then an `EndFrame` stops every processor in order.
        """
        self._client_gone = True  # the reason, unless an ending was already under way
        await self.worker.queue_frames([InterruptionFrame(), EndFrame(reason=str(EndReason.CLIENT_GONE))])

    async def end(self, reason: EndReason) -> None:
        """End from outside the pipeline (shutdown, error): stop the bot, say goodbye, end."""
        await self.worker.queue_frames(
            [InterruptionFrame(), EndSessionFrame(reason=reason, goodbye=self._goodbye)]
        )

    async def run(self) -> EndReason:
        """Run the pipeline to its end, log one line about it, and say why it ended."""
        runner = WorkerRunner(handle_sigint=False, handle_sigterm=False)
        await runner.add_workers(self.worker)
        metrics.ACTIVE_SESSIONS.inc()
        try:
            await runner.run()
        finally:
            duration = time.monotonic() - self._started
            metrics.ACTIVE_SESSIONS.dec()
            gone_reason = EndReason.CLIENT_GONE if self._client_gone else EndReason.ERROR
            self.end_reason = self.end_reason or gone_reason
            metrics.SESSIONS_ENDED.labels(str(self.end_reason), self.bot_name).inc()
            metrics.SESSION_SECONDS.observe(duration)
            logger.info(
                f"Session {self.session_id} ended: reason={self.end_reason} "
                f"duration={duration:.1f}s turns={self._turns} bot={self.bot_name}"
            )
        return self.end_reason
