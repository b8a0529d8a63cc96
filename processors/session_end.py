"""The one way a session ends gracefully: goodbye in full, the client told why, then the end."""

from __future__ import annotations

from loguru import logger
from pipecat.frames.frames import (
    EndWorkerFrame,
    Frame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    TextFrame,
    TTSSpeakFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from processors.frames import (
    ClientHangupFrame,
    EndReason,
    EndSessionFrame,
    SessionEndedMessageFrame,
    SessionEndingFrame,
)

# Anything that would be spoken after the goodbye (a reply or prompt already on its way when
# the ending started, a greeting queued behind it) never reaches the TTS.
SPEECH_AFTER_THE_END = (TTSSpeakFrame, TextFrame, LLMFullResponseStartFrame, LLMFullResponseEndFrame)


class SessionEndProcessor(FrameProcessor):
    """Turns the first `EndSessionFrame` into the end of the session.

    Pushes downstream, in order: `TTSSpeakFrame(goodbye)` (not added to the LLM context), a
    `SessionEndedMessageFrame` that the transport's serializer renders for its client, and an
    `EndWorkerFrame`. The worker frame queues behind the goodbye audio in the TTS and the output
    transport, so the goodbye is played to the end before the pipeline ends; it is never
    cancelled. Later `EndSessionFrame`s are dropped, and so are interruptions once the session
    is ending, so a caller who talks over the goodbye does not cut it off; a `SessionEndingFrame`
    sent upstream mutes the user (`MutedWhileEndingStrategy` in the user aggregator), so what
    they say is not answered either.

    Place it just before the TTS.

    Event handlers available:

    - on_session_ending(processor, reason): the session has started to end, with this reason.

    Example::

        ender = SessionEndProcessor()

        @ender.event_handler("on_session_ending")
        async def on_session_ending(processor, reason):
            ...
    """

    def __init__(self, **kwargs):
        super().__init__(**{"enable_direct_mode": True, **kwargs})  # no queue hop per frame
        self._ending = False
        self._register_event_handler("on_session_ending", sync=True)

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, EndSessionFrame):
            if not self._ending:
                await self._end(frame)
            return
        if isinstance(frame, ClientHangupFrame):
            if not self._ending:
                await self.broadcast_interruption()  # stop the LLM and the audio in flight
                await self._end(EndSessionFrame(reason=EndReason.CLIENT_HANGUP))
            return
        if self._ending and (
            isinstance(frame, InterruptionFrame)
            or (direction == FrameDirection.DOWNSTREAM and isinstance(frame, SPEECH_AFTER_THE_END))
        ):
            return
        await self.push_frame(frame, direction)

    async def _end(self, frame: EndSessionFrame) -> None:
        self._ending = True
        logger.debug(f"{self}: ending the session ({frame.reason})")
        await self._call_event_handler("on_session_ending", frame.reason)
        await self.push_frame(SessionEndingFrame(reason=frame.reason), FrameDirection.UPSTREAM)
        if frame.goodbye:
            await self.push_frame(TTSSpeakFrame(frame.goodbye, append_to_context=False))
        await self.push_frame(SessionEndedMessageFrame.for_reason(frame.reason, frame.detail))
        await self.push_frame(EndWorkerFrame(reason=str(frame.reason)))
