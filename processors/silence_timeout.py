"""Re-prompts, then ends, a session where audio keeps arriving but nobody speaks."""

from __future__ import annotations

from collections.abc import Sequence

from loguru import logger
from pipecat.frames.frames import Frame, TTSSpeakFrame, UserStartedSpeakingFrame, VADUserStartedSpeakingFrame
from pipecat.processors.frame_processor import FrameDirection

from processors.conversation_clock import ConversationClockProcessor
from processors.conversation_state import ConversationState
from processors.frames import SilenceTimeoutFrame


class SilenceTimeoutProcessor(ConversationClockProcessor):
    """After a silence, says each prompt of its schedule in turn, then the goodbye, and ends.

    The clock counts from the later of the user's last speech and the moment the bot stopped
    being busy (or the start, with no greeting); bot speech and thinking never count as user
    silence, and it does not run while the user speaks (or holds push-to-talk). Each prompt gets
    a fresh timer; any user speech resets the escalation. It only fires while audio is still
    arriving: a client that stopped sending altogether is the idle timeout's business.

    Pushes `TTSSpeakFrame(prompt)` for each re-prompt, then `SilenceTimeoutFrame(goodbye)`.

    Example::

        SilenceTimeoutProcessor(
            state=state, timeout_secs=20, prompt="Are you still there?", prompts=1, goodbye="Bye!"
        )
    """

    def __init__(
        self,
        *,
        state: ConversationState,
        timeout_secs: float,
        prompt: str = "",
        prompts: int = 0,
        goodbye: str = "",
        schedule: Sequence[tuple[float, str]] | None = None,
        **kwargs,
    ):
        """`schedule`: the prompts in order as (seconds to wait, what to say), replacing
        `prompts` times `prompt` after `timeout_secs` each; the goodbye always follows the last
        prompt after `timeout_secs`. A `timeout_secs` of 0 turns the whole clock off."""
        super().__init__(state=state, timeout_secs=timeout_secs, **kwargs)
        self._schedule = list(schedule) if schedule is not None else [(timeout_secs, prompt)] * prompts
        self._prompts = len(self._schedule)
        self._prompts_left = self._prompts
        self._goodbye = goodbye

    def _wait(self) -> float:
        """The silence allowed before the next step: the next prompt's wait, or the goodbye's."""
        if self._prompts_left > 0:
            return self._schedule[self._prompts - self._prompts_left][0]
        return self._timeout

    def observe(self, frame: Frame, direction: FrameDirection) -> None:
        super().observe(frame, direction)
        if isinstance(frame, VADUserStartedSpeakingFrame | UserStartedSpeakingFrame):
            self._prompts_left = self._prompts

    def seconds_until_due(self) -> float:
        if self._timeout <= 0:
            return float("inf")
        state = self._state
        if state.bot_busy or state.user_speaking:
            return self._wait()
        if not state.client_audio_flowing:
            return self._wait()  # no audio at all: idle, not silence (audio resuming wakes us)
        since = max(state.last_user_speech, state.waiting_since)
        return since + self._wait() - state.now()

    async def on_due(self) -> bool:
        if self._prompts_left > 0:
            wait, prompt = self._schedule[self._prompts - self._prompts_left]
            self._prompts_left -= 1
            logger.info(f"{self}: nobody spoke for {wait:g}s, prompting")
            self._state.expect_bot_speech()
            await self.push_frame(TTSSpeakFrame(prompt))
            return True
        logger.info(f"{self}: still nobody spoke after {self._prompts} prompt(s), ending the session")
        await self.push_frame(
            SilenceTimeoutFrame(goodbye=self._goodbye, detail=f"no one spoke for {self._timeout:g} seconds")
        )
        return False
