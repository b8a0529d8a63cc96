"""Who holds the floor, followed from the frames passing one point of the pipeline.

Pure bookkeeping with no timers and no pipeline, so it can be tested frame by frame. One per
session, fed by `ConversationTracker` and read by every clock (idle, silence): is the bot busy
(the user is owed a reply or is hearing one), and since when has the conversation been
waiting on the user.
"""

from __future__ import annotations

from collections.abc import Callable

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    Frame,
    InputAudioRawFrame,
    InputDTMFFrame,
    InputTransportMessageFrame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSSpeakFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)

from processors.clock import REAL_TIME, Clock
from processors.frames import ClientAudioTickFrame

# Frames that prove the client is alive and sending (audio, or the ticks that stand in for it).
CLIENT_AUDIO_FRAMES = (InputAudioRawFrame, ClientAudioTickFrame)
CLIENT_INPUT_FRAMES = (*CLIENT_AUDIO_FRAMES, InputTransportMessageFrame, InputDTMFFrame)

# How long a hand-over between stages may take before we stop counting it as "the bot is busy":
# end of speech -> transcript -> user turn decision -> LLM start, or LLM text -> first audio.
# Pipecat's own user-turn stop timeout is 5 s; nothing in between takes longer unless broken.
DEFAULT_HANDOVER_SECS = 6.0
# Client audio older than this means the client stopped sending (a stall, or it went quiet).
AUDIO_GAP_SECS = 1.0


class ConversationState:
    """Tracks user speech, LLM generation and bot speech.

    The bot is *busy* from the end of the user's speech until it has finished speaking its reply:
    while the STT finalises and the turn is decided (a bounded hand-over), while the LLM generates
    (unbounded: however long it takes), while TTS audio is pending (bounded) and while the bot
    speaks (unbounded).

    Example::

        state = ConversationState()
        state.on_change(clock.reschedule)  # a timer re-checks its deadline on every change
        state.observe(frame)           # for every frame that passes
        if not state.bot_busy and not state.user_speaking: ...
    """

    def __init__(self, *, handover_secs: float = DEFAULT_HANDOVER_SECS, clock: Clock = REAL_TIME):
        self.clock = clock
        self._clock = clock.now
        self._listeners: list[Callable[[], None]] = []
        self._handover_secs = handover_secs
        self._user_speaking = False
        self._llm_active = False
        self._reply_has_text = False
        self._bot_speaking = False
        self._handover_until = 0.0
        self.restart()

    def restart(self) -> None:
        """Start every clock from now (the session has just started)."""
        now = self._clock()
        self.last_client_audio = float("-inf")
        self.last_client_input = now
        self.last_user_speech = now
        self._busy_ended_at = now

    def now(self) -> float:
        return self._clock()

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call `listener()` whenever something changes that a deadline may depend on (not for
        input that only keeps arriving: that can only push a deadline later)."""
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in self._listeners:
            listener()

    @property
    def client_audio_flowing(self) -> bool:
        """Client audio arrived within the last `AUDIO_GAP_SECS`."""
        return self._clock() - self.last_client_audio <= AUDIO_GAP_SECS

    @property
    def user_speaking(self) -> bool:
        return self._user_speaking

    @property
    def bot_busy(self) -> bool:
        return self._llm_active or self._bot_speaking or self._clock() < self._handover_until

    @property
    def waiting_since(self) -> float:
        """When the bot last stopped being busy (a lapsed hand-over counts from its deadline)."""
        if self.bot_busy:
            return self._clock()
        return max(self._busy_ended_at, self._handover_until)

    def expect_bot_speech(self) -> None:
        """The bot is about to speak something we pushed ourselves (a prompt, a greeting)."""
        self._begin_handover()
        self._changed()

    def _begin_handover(self) -> None:
        self._handover_until = self._clock() + self._handover_secs

    def _end_busy(self) -> None:
        self._handover_until = 0.0
        self._busy_ended_at = self._clock()

    def observe(self, frame: Frame) -> None:
        """Update the state from one frame (any direction)."""
        if isinstance(frame, CLIENT_INPUT_FRAMES):
            resumed = isinstance(frame, CLIENT_AUDIO_FRAMES) and not self.client_audio_flowing
            self.last_client_input = self._clock()
            if isinstance(frame, CLIENT_AUDIO_FRAMES):
                self.last_client_audio = self.last_client_input
            if resumed:
                self._changed()  # after a stall, a silence deadline may already have passed
            return
        if self._update(frame):
            self._changed()

    def _update(self, frame: Frame) -> bool:
        """Apply a conversation frame; True if it was one."""
        if isinstance(frame, VADUserStartedSpeakingFrame | UserStartedSpeakingFrame):
            self._user_speaking = True
            self.last_user_speech = self._clock()
        elif isinstance(frame, VADUserStoppedSpeakingFrame | UserStoppedSpeakingFrame):
            self._user_speaking = False
            self.last_user_speech = self._clock()
            if not (self._llm_active or self._bot_speaking):
                self._begin_handover()
        elif isinstance(frame, InterruptionFrame):
            self._llm_active = False  # the reply being generated was dropped
        elif isinstance(frame, LLMFullResponseStartFrame):
            self._llm_active = True
            self._reply_has_text = False
        elif isinstance(frame, LLMTextFrame):
            self._reply_has_text = self._reply_has_text or bool(frame.text.strip())
            return False  # busy already; a token moves no deadline
        elif isinstance(frame, LLMFullResponseEndFrame):
            self._llm_active = False
            if self._bot_speaking:
                return True
            if self._reply_has_text:
                self._begin_handover()  # TTS is still turning the reply into audio
            else:
                self._end_busy()  # nothing to say: the user is waited on again
        elif isinstance(frame, TTSSpeakFrame):
            if not self._bot_speaking:
                self._begin_handover()
        elif isinstance(frame, BotStartedSpeakingFrame):
            self._bot_speaking = True
            self._handover_until = 0.0
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._bot_speaking = False
            if not self._llm_active:
                self._end_busy()
        else:
            return False
        return True
