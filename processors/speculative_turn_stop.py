"""The turn analyzer's stop strategy, answering a predicted end of turn while the turn is still open.

Deepgram Flux predicts ends of turn itself (`EagerTranscriptionFrame`), and Pipecat's
`EagerUserTurnStopStrategy` answers the prediction in place of the turn analyzer. Other streaming
STTs only send interim results, and the turn's end is decided later by the turn analyzer and the
STT's final transcript. This strategy makes the prediction itself when the VAD hears the user
stop, from the interim results, and settles it the way Pipecat's strategy does: the same events,
the same `EagerMatchPolicy`, the LLM's `SpeculationGate` holding the reply.
"""

from __future__ import annotations

import asyncio

from loguru import logger
from pipecat.frames.frames import (
    EagerEndOfTurnCancelFrame,
    EagerTranscriptionFrame,
    Frame,
    InterimTranscriptionFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.turns.types import ProcessFrameResult, UserTurnSpeculation
from pipecat.turns.user_stop import EagerMatchPolicy, NormalizedMatch
from pipecat.turns.user_stop.turn_analyzer_user_turn_stop_strategy import TurnAnalyzerUserTurnStopStrategy

from processors.frames import PushToTalkFrame


class SpeculativeTurnAnalyzerUserTurnStopStrategy(TurnAnalyzerUserTurnStopStrategy):
    """`TurnAnalyzerUserTurnStopStrategy` that starts the reply at the VAD's stop.

    - `VADUserStoppedSpeakingFrame`, with an interim result since the VAD last heard speech start
      and since the last final: runs the LLM on a provisional context ending with the turn's
      finals plus that interim (`trigger_user_turn_inference_triggered(speculation=...)`), *before*
      the turn analyzer judges the stop. (The stop is a system frame: anything queued behind it,
      such as an `EagerTranscriptionFrame` from an upstream processor, would wait for smart-turn's
      inference, 30-60 ms.) The LLM's `SpeculationGate` holds the reply; the context is not
      touched.
    - An interim result during that silence that says something else (interims lag the audio,
      so the one in hand at the stop can miss the last words), or an `EagerTranscriptionFrame`
      (an STT that predicts ends of turn itself): a new speculation replaces the old one.
    - The turn ends (the analyzer's verdict and the final transcript, as without speculation):
      if the turn's finals match the speculated text (`match_policy`, Pipecat's `NormalizedMatch`
      by default), the turn is finalised with `confirms_speculation=True`: its
      `UserStoppedSpeakingFrame` releases the held reply and the user message is written without
      a second inference. Otherwise the speculation is withdrawn and the turn ends as usual,
      running the LLM on the final transcript.
    - `VADUserStartedSpeakingFrame` (the user resumed) or `EagerEndOfTurnCancelFrame` (the
      speculative inference wanted a tool call): withdrawn.
    - A turn ended any other way (the stop watchdog, session end), or a speculation unresolved
      after `speculation_timeout`: withdrawn.

    Nothing is predicted in push-to-talk mode (the button delimits turns; its release also comes
    as a VAD stop) or when the STT sends no interim results (Moonshine, OpenAI's segmented STT).

    Example::

        UserTurnStrategies(stop=[SpeculativeTurnAnalyzerUserTurnStopStrategy(turn_analyzer=analyzer)])
    """

    def __init__(
        self,
        *,
        match_policy: EagerMatchPolicy | None = None,
        speculation_timeout: float = 5.0,
        **kwargs,
    ):
        """Args:
        match_policy: whether the final transcript still matches the speculated one.
        speculation_timeout: seconds a speculation may stay unresolved; longer than the turn
            analyzer's own silence timeout (3 s for smart-turn), so a reply held through a
            pause the analyzer judged incomplete is still released when the turn ends.
        """
        super().__init__(**kwargs)
        self._match_policy = match_policy or NormalizedMatch()
        self._speculation_timeout = speculation_timeout
        self._speculation: UserTurnSpeculation | None = None
        self._speculation_timer: asyncio.Task | None = None
        self._finals: list[str] = []  # this turn's final transcripts, as the user aggregator collects them
        self._interim: str | None = None  # the latest interim since the last final and VAD start
        self._silent = False  # between the VAD's stop and the next start or the turn's end
        self._push_to_talk = False

    async def process_frame(self, frame: Frame) -> ProcessFrameResult:
        if isinstance(frame, PushToTalkFrame):
            self._push_to_talk = True
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            self._silent = True
            await self._speculate_on_interim()  # ahead of the turn analyzer's verdict (super, below)
        elif isinstance(frame, VADUserStartedSpeakingFrame):
            self._silent = False
            self._interim = None
            await self._withdraw_unresolved("the user resumed")
        elif isinstance(frame, InterimTranscriptionFrame):
            self._interim = frame.text.strip() or None
            if self._silent:
                await self._speculate_on_interim()  # a fresher transcript of the words before the pause
        elif isinstance(frame, EagerTranscriptionFrame):
            await self._speculate(frame.text)
        elif isinstance(frame, EagerEndOfTurnCancelFrame):
            if self._take_speculation():
                logger.debug(f"{self}: speculative reply withdrawn (it wanted a tool, or the STT said so)")
        elif isinstance(frame, TranscriptionFrame) and frame.text.strip():
            self._finals.append(frame.text.strip())
            self._interim = None
        return await super().process_frame(frame)

    async def trigger_user_turn_stopped(self, *, enable_user_speaking_frames: bool | None = None):
        """End the turn, keeping the speculative reply only if the final transcript matches it."""
        speculation = self._take_speculation()
        if speculation is None:
            await super().trigger_user_turn_stopped(enable_user_speaking_frames=enable_user_speaking_frames)
            return
        final = " ".join(self._finals)
        if self._match_policy.matches(speculation.text, final):
            logger.debug(f"{self}: speculative reply kept: the final transcript matches [{final}]")
            await self.trigger_user_turn_finalized(
                enable_user_speaking_frames=enable_user_speaking_frames, confirms_speculation=True
            )
            return
        logger.debug(
            f"{self}: speculative reply withdrawn: the final transcript differs "
            f"(speculated: [{speculation.text}], final: [{final}])"
        )
        await self.trigger_user_turn_speculation_cancelled()
        await super().trigger_user_turn_stopped(enable_user_speaking_frames=enable_user_speaking_frames)

    async def handle_user_turn_started(self):
        await self._withdraw_unresolved("a new turn started")
        await super().handle_user_turn_started()

    async def handle_user_turn_stopped(self):
        await self._withdraw_unresolved("the turn ended without it")
        self._finals = []
        self._interim = None
        self._silent = False
        await super().handle_user_turn_stopped()

    async def cleanup(self):
        timer = self._speculation_timer
        self._take_speculation()
        if timer is not None:
            await self.task_manager.cancel_task(timer)
        await super().cleanup()

    async def _speculate_on_interim(self) -> None:
        if self._interim is not None and not self._push_to_talk:
            await self._speculate(self._interim)

    async def _speculate(self, eager_text: str) -> None:
        """Answer the turn as heard so far, leaving it open (unless that is already being answered)."""
        speculation = UserTurnSpeculation(text=" ".join([*self._finals, eager_text.strip()]).strip())
        if not speculation.text:
            return
        current = self._speculation
        if current is not None and self._match_policy.matches(current.text, speculation.text):
            return
        await self._withdraw_unresolved("a newer prediction replaced it")
        self._speculation = speculation
        self._speculation_timer = self.task_manager.create_task(
            self._expire(speculation), f"{self}::speculation_timeout"
        )
        logger.debug(f"{self}: speculating on [{speculation.text}]")
        await self.trigger_user_turn_inference_triggered(speculation=speculation)

    async def _expire(self, speculation: UserTurnSpeculation) -> None:
        await asyncio.sleep(self._speculation_timeout)
        self._speculation_timer = None  # this task is ending: nothing left to cancel
        if self._speculation is speculation:
            self._speculation = None
            logger.debug(
                f"{self}: speculative reply withdrawn: unresolved after {self._speculation_timeout}s"
            )
            await self.trigger_user_turn_speculation_cancelled()

    async def _withdraw_unresolved(self, why: str) -> None:
        if self._take_speculation():
            logger.debug(f"{self}: speculative reply withdrawn: {why}")
            await self.trigger_user_turn_speculation_cancelled()

    def _take_speculation(self) -> UserTurnSpeculation | None:
        """The speculation in flight, now resolved: the one way out, so none is settled twice.

        No await between taking it and acting on it, so a trigger on another task (the STT
        timeout, a transcript) can never find it gone while it is not yet settled.
        """
        speculation, self._speculation = self._speculation, None
        timer, self._speculation_timer = self._speculation_timer, None
        if timer is not None:
            timer.cancel()  # the task manager forgets it when it ends
        return speculation
