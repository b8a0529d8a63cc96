"""Push-to-talk: the button, not the VAD, delimits user turns once a client uses it."""

from __future__ import annotations

import asyncio
from collections import deque

from loguru import logger
from pipecat.frames.frames import (
    Frame,
    InputAudioRawFrame,
    ProposedUserStartedSpeakingFrame,
    ProposedUserStoppedSpeakingFrame,
    STTMuteFrame,
    UserSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.turns.types import ProcessFrameResult
from pipecat.turns.user_stop.external_user_turn_stop_strategy import ExternalUserTurnStopStrategy

from processors.deadline_timer import DeadlineTimerProcessor
from processors.frames import PushToTalkFrame

VAD_SIGNALS = (VADUserStartedSpeakingFrame, VADUserStoppedSpeakingFrame, UserSpeakingFrame)


class PushToTalkGate(DeadlineTimerProcessor):
    """Turns `PushToTalkFrame`s into the VAD and turn signals the rest of the pipeline knows.

    Until the first `PushToTalkFrame` it passes everything. From then on (push-to-talk mode):

    - the VAD's own speech signals are dropped: pauses while the button is held do not end
      the turn, and noise while it is up does not start one;
    - press: `STTMuteFrame(False)`, `VADUserStartedSpeakingFrame` (the STT opens a segment, the
      user aggregator starts the turn and interrupts the bot), `ProposedUserStartedSpeakingFrame`;
    - release: `VADUserStoppedSpeakingFrame` (the STT finalises, without reconnecting),
      `ProposedUserStoppedSpeakingFrame` (`PushToTalkUserTurnStopStrategy` ends the turn once
      the transcript is in), then `STTMuteFrame(True)` so audio between turns is not transcribed.

    Audio keeps flowing through either way, so the idle clock still sees a live client.
    Place it after the `VADProcessor` and before the STT.

    The button takes effect in order with the audio: a press or release that arrives before
    the audio the client sent ahead of it (`PushToTalkFrame.after_audio_secs`; that audio is
    still with the VAD) waits for it, so the last words before a release are transcribed,
    not muted and left out of the turn. It waits `MAX_WAIT_SECS` at most: audio that never
    comes (dropped, or held back by a resampler when the client stops sending) cannot leave
    the button up and the turn open.

    Example::

        Pipeline([transport.input(), VADProcessor(vad_analyzer=vad), PushToTalkGate(), stt, ...])
    """

    # Audio durations are summed in a different order on the two sides (frames may be re-cut).
    AUDIO_SECS_TOLERANCE = 0.001
    # Buttons held at most; past that the oldest takes effect at once (a client flooding `ptt`
    # while its audio is still with the VAD holds no memory).
    MAX_WAITING_BUTTONS = 8
    # The longest a button waits for its audio: the VAD's lag under load is tens of milliseconds.
    MAX_WAIT_SECS = 0.5

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._ptt_mode = False
        self._held = False
        self._audio_secs = 0.0  # input audio that has passed the gate
        # Buttons waiting for the audio before them, with when each arrived.
        self._waiting: deque[tuple[PushToTalkFrame, float]] = deque()
        # The timer's task and the input's both apply buttons: one at a time, in order.
        self._applying = asyncio.Lock()

    def seconds_until_due(self) -> float:
        if not self._waiting:
            return float("inf")
        return self._waiting[0][1] + self.MAX_WAIT_SECS - self._clock.now()

    async def on_due(self) -> bool:
        """The oldest button waited long enough for its audio: it takes effect now."""
        async with self._applying:
            if self._waiting and self.seconds_until_due() <= 0:
                button, _ = self._waiting.popleft()
                logger.debug(f"{self}: applying a push-to-talk button without the audio sent before it")
                await self._apply(button)
        await self._apply_buttons_due()
        return True

    async def forward(self, frame: Frame, direction: FrameDirection) -> None:
        if isinstance(frame, PushToTalkFrame):
            self._waiting.append((frame, self._clock.now()))
            await self._apply_buttons_due()
            if self._waiting:
                self.reschedule()
            return
        if self._ptt_mode and direction == FrameDirection.DOWNSTREAM and isinstance(frame, VAD_SIGNALS):
            return
        await self.push_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame) and direction == FrameDirection.DOWNSTREAM:
            self._audio_secs += len(frame.audio) / 2 / frame.num_channels / frame.sample_rate
            await self._apply_buttons_due()

    async def _apply_buttons_due(self) -> None:
        """Apply, in order, the buttons whose preceding audio has passed."""
        if not self._waiting:
            return
        async with self._applying:
            while self._waiting and (
                self._waiting[0][0].after_audio_secs <= self._audio_secs + self.AUDIO_SECS_TOLERANCE
                or len(self._waiting) > self.MAX_WAITING_BUTTONS
            ):
                button, _ = self._waiting.popleft()
                await self._apply(button)

    async def _apply(self, button: PushToTalkFrame) -> None:
        await self.push_frame(button)  # the stop strategy learns the mode from it
        await self._on_button(button.active)

    async def _on_button(self, pressed: bool) -> None:
        if not self._ptt_mode:
            self._ptt_mode = True
            logger.info(f"{self}: push-to-talk mode")
            if not pressed:
                await self.push_frame(STTMuteFrame(mute=True))
        if pressed == self._held:
            return
        self._held = pressed
        if pressed:
            await self.push_frame(STTMuteFrame(mute=False))
            await self.broadcast_frame(VADUserStartedSpeakingFrame)
            await self.push_frame(ProposedUserStartedSpeakingFrame())
        else:
            await self.broadcast_frame(VADUserStoppedSpeakingFrame, stop_secs=0.0)
            await self.push_frame(ProposedUserStoppedSpeakingFrame())
            await self.push_frame(STTMuteFrame(mute=True))


class PushToTalkUserTurnStopStrategy(ExternalUserTurnStopStrategy):
    """Pipecat's external stop strategy, active only once the session is in push-to-talk mode.

    In VAD mode it would end a turn on the first final transcript, so until a
    `PushToTalkFrame` passes it stays out of the way and the default strategies decide.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._active = False

    async def process_frame(self, frame: Frame) -> ProcessFrameResult:
        if isinstance(frame, PushToTalkFrame):
            self._active = True
        if not self._active:
            return ProcessFrameResult.CONTINUE
        return await super().process_frame(frame)
