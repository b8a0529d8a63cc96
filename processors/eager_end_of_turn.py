"""A predicted end of turn at the VAD's stop, for any streaming STT: the start of a speculative reply.

Deepgram Flux predicts ends of turn itself, and Pipecat answers the prediction while the turn is
still open (`EagerTranscriptionFrame`, the LLM's `SpeculationGate`). Other streaming STTs only send
interim results, and the turn's end is decided later by the turn analyzer and the STT's final
transcript. This makes the same prediction when the VAD hears the user stop, from the interim
results, with Pipecat's own signalling (`EagerEndOfTurnSTTServiceMixin`), so the LLM starts during
that wait. `SpeculativeTurnAnalyzerUserTurnStopStrategy` answers and settles the prediction.
"""

from __future__ import annotations

from pipecat.frames.frames import (
    Frame,
    InterimTranscriptionFrame,
    TranscriptionFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.turns.eager_end_of_turn_mixin import EagerEndOfTurnSTTServiceMixin
from pipecat.turns.user_stop import NormalizedMatch

from processors.frames import PushToTalkFrame


class EagerEndOfTurnProcessor(EagerEndOfTurnSTTServiceMixin):
    """Predicts that the user's turn ended when the VAD hears them stop, from the STT's interim results.

    - `VADUserStoppedSpeakingFrame`, with an interim result since the VAD last heard speech start
      and since the last final: pushes `EagerTranscriptionFrame(latest interim)`. Like Flux's
      eager transcript it carries only what is not final yet; the stop strategy prepends the
      turn's finals (as Pipecat's `EagerUserTurnStopStrategy` does).
    - An interim result arriving after that stop (before the user resumes or the turn ends) that
      says something else: a new `EagerTranscriptionFrame`, which replaces the prediction. The
      interim in hand at the VAD's stop can predate the last words (interims lag the audio); a
      reply to it would be withdrawn anyway when the final arrives.
    - `VADUserStartedSpeakingFrame` while a prediction is pending: pushes
      `EagerEndOfTurnCancelFrame` (the user resumed, as Flux's `TurnResumed`); the LLM stops the
      speculative inference and its gate drops the held reply.
    - `UserStoppedSpeakingFrame` (the user aggregator ended the turn): the prediction is settled.

    It predicts nothing in push-to-talk mode (the button delimits turns; its release also comes
    as a VAD stop), with `enabled=False`, or when the STT sends no interim results (Moonshine,
    OpenAI's segmented STT): without them there is no unfinalised text to answer early.
    Place it right after the STT.

    Example::

        Pipeline([..., stt, EagerEndOfTurnProcessor(), user_aggregator, llm, ...])
    """

    def __init__(self, *, enabled: bool = True, **kwargs):
        super().__init__(**{"enable_direct_mode": True, **kwargs}, enable_eager_end_of_turn=enabled)
        self._push_to_talk = False
        self._interim: InterimTranscriptionFrame | None = None  # since the last final and VAD start
        self._silent = False  # between the VAD's stop and the next start or the turn's end
        self._predicted: str | None = None  # the text predicted in this silence
        self._same_text = NormalizedMatch()

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        downstream = direction == FrameDirection.DOWNSTREAM
        if isinstance(frame, PushToTalkFrame):
            self._push_to_talk = True
        elif isinstance(frame, InterimTranscriptionFrame):
            self._interim = frame if frame.text.strip() else None
            if self._silent:
                await self._predict()  # a fresher transcript of the words before the pause
        elif isinstance(frame, TranscriptionFrame):
            self._interim = None
        elif isinstance(frame, VADUserStartedSpeakingFrame) and downstream:
            self._silent = False
            self._interim = None
            self._predicted = None
            await self._cancel_eager_end_of_turn()
        elif isinstance(frame, VADUserStoppedSpeakingFrame) and downstream:
            self._silent = True
            await self._predict()
        elif isinstance(frame, UserStoppedSpeakingFrame):
            # The turn ended (its reply kept or answered afresh): nothing to predict until the
            # user speaks again. Withdrawals made downstream (`EagerEndOfTurnCancelFrame` coming
            # up) are not followed: a newer prediction withdraws the one it replaces that way,
            # and an extra withdrawal at the next VAD start is a no-op for the LLM.
            self._silent = False
            self._clear_eager_end_of_turn()

    async def _predict(self) -> None:
        """Predict the end of turn on the latest interim, unless it says what was already predicted."""
        interim = self._interim
        if self._push_to_talk or interim is None:
            return
        if self._predicted is not None and self._same_text.matches(self._predicted, interim.text):
            return
        self._predicted = interim.text
        await self._push_eager_end_of_turn(
            interim.text, user_id=interim.user_id, language=interim.language, result=interim.result
        )
