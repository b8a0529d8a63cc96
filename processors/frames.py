"""Our frames, and the one vocabulary of session endings used by frames, clients, logs and metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from pipecat.frames.frames import (
    ControlFrame,
    OutputTransportMessageFrame,
    OutputTransportMessageUrgentFrame,
    SystemFrame,
)


class EndReason(StrEnum):
    """Why a session ended. Exactly one per session; clients see these strings."""

    IDLE_TIMEOUT = "idle_timeout"
    SILENCE_TIMEOUT = "silence_timeout"
    MAX_DURATION = "max_duration"
    CLIENT_HANGUP = "client_hangup"  # the client asked to end (and is still there to be told)
    CLIENT_GONE = "client_gone"  # the connection dropped: nobody is left to tell
    CONSOLE_STOP = "console_stop"  # Ctrl-C at the local bot's console: a goodbye, then the end
    SERVER_SHUTDOWN = "server_shutdown"
    USER_GOODBYE = "user_goodbye"
    ERROR = "error"


@dataclass
class EndSessionFrame(ControlFrame):
    """Asks for a graceful end: the goodbye is spoken in full, the client is told why, then the end.

    Non-interruptible, so a barge-in cannot drop it. `SessionEndProcessor` turns it into the
    goodbye, the client notice and an `EndWorkerFrame`.

    Parameters:
        reason: Why the session ends.
        goodbye: What the bot says last; empty for none.
        detail: The reason in words, for people ("no one spoke for 20 seconds").
    """

    reason: EndReason = EndReason.ERROR
    goodbye: str = ""
    detail: str = ""
    interruptible: bool = field(default=False, init=False)

    def __str__(self) -> str:
        return f"{self.name}(reason: {self.reason})"


@dataclass
class IdleTimeoutFrame(EndSessionFrame):
    """The client sent nothing at all for the idle timeout while the bot was not busy."""

    reason: EndReason = EndReason.IDLE_TIMEOUT


@dataclass
class SilenceTimeoutFrame(EndSessionFrame):
    """Audio kept arriving but nobody spoke, through every re-prompt."""

    reason: EndReason = EndReason.SILENCE_TIMEOUT


@dataclass
class MaxDurationFrame(EndSessionFrame):
    """The session reached its hard length cap."""

    reason: EndReason = EndReason.MAX_DURATION


@dataclass
class UserGoodbyeFrame(EndSessionFrame):
    """The user ended the conversation ("bye", "that's all, thanks"), as the LLM's
    `end_conversation` tool or the goodbye phrase detector judged."""

    reason: EndReason = EndReason.USER_GOODBYE


@dataclass
class SessionEndingFrame(SystemFrame):
    """Sent upstream by `SessionEndProcessor` when the ending starts: the user is not answered
    any more (see `MutedWhileEndingStrategy`)."""

    reason: EndReason = EndReason.ERROR


@dataclass
class SessionEndedMessageFrame(OutputTransportMessageFrame):
    """Tells the client why the session ends; queued after the goodbye audio, before the close.

    Each transport's serializer renders it in its own protocol (an RTVI server message on `/ws`).
    """

    @classmethod
    def for_reason(cls, reason: EndReason, detail: str = "") -> SessionEndedMessageFrame:
        message = {"type": "session-ended", "reason": str(reason)}
        if detail:
            message["detail"] = detail
        return cls(message=message)

    @property
    def reason(self) -> str:
        return self.message["reason"]


@dataclass
class TurnMetricsMessageFrame(OutputTransportMessageUrgentFrame):
    """One turn's latency breakdown for the client (RTVI `metrics` on `/ws`)."""

    @classmethod
    def for_metrics(cls, metrics: dict) -> TurnMetricsMessageFrame:
        return cls(message={"type": "turn-metrics", **metrics})


@dataclass
class PushToTalkFrame(SystemFrame):
    """The client pressed (`active=True`) or released the push-to-talk button.

    `after_audio_secs` is how much input audio the client had sent before the button changed.
    The audio reaches the pipeline through the transport's audio task, the button through its
    receive task, so the button can overtake the last frames of audio (they wait for the VAD);
    `PushToTalkGate` holds the button until that much audio has passed it.
    """

    active: bool = False
    after_audio_secs: float = 0.0


@dataclass
class ClientHangupFrame(SystemFrame):
    """The client asked to end the session: a `hangup` message, or Twilio's `stop`.

    Not the same as the client being gone (the socket dropped): that ends the session from the
    transport's `on_client_disconnected`, see `VoiceSession.client_gone`.
    """


@dataclass
class ClientAudioTickFrame(SystemFrame):
    """Client audio is still arriving: stands in for the input audio frames past the point that needs them.

    Input audio is consumed by the VAD, the STT and the user aggregator; carrying every 20 ms
    frame on through the LLM, our clocks, the TTS and the output transport cost a queue hop
    and an observer call each, for nothing. The clocks only need to know that audio flows.
    """


@dataclass
class BotTextMessageFrame(OutputTransportMessageUrgentFrame):
    """What the bot says, for clients that show text: a sentence of a reply as it is generated,
    or a whole text spoken without the LLM (greeting, prompt, goodbye)."""

    @classmethod
    def for_text(cls, text: str) -> BotTextMessageFrame:
        return cls(message={"type": "bot-text", "text": text})

    @property
    def text(self) -> str:
        return self.message["text"]


@dataclass
class UserTranscriptMessageFrame(OutputTransportMessageUrgentFrame):
    """What the user said, for clients that show text (`final` False for interim results)."""

    @classmethod
    def for_text(cls, text: str, *, final: bool) -> UserTranscriptMessageFrame:
        return cls(message={"type": "user-transcript", "text": text, "final": final})
