"""Clients that talk like people: real speech at real-time pace in 20 ms frames, then listen.

Each client loops [utterance, pause] and records, per utterance, when its last speech frame was
sent, when the first bot audio of the reply arrived, and whether the reply would have stuttered:
each client models its playback buffer (play from the first audio byte at real time; audio that
arrives after the buffer ran dry leaves a gap). A reply that arrives on time but stutters is as
bad for the caller as a late one, so `smooth` replies are what the benchmark counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field

import pipecat.frames.protobufs.frames_pb2 as frame_protos
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.support.speech import noise_pcm16

FRAME_SECS = 0.02
SAMPLE_RATE = 16000
ANSWER_WINDOW_SECS = 4.0  # a reply counts if it starts within this of the end of speech
UNDERRUN_SECS = 0.1  # a playback gap longer than this is audible as a stutter
NEW_REPLY_GAP_SECS = 0.5  # bot audio after this long without any starts a new reply


FRAME_BYTES = int(SAMPLE_RATE * FRAME_SECS) * 2


def speech_frames(pcm16: bytes) -> list[bytes]:
    """A clip cut into serialised 20 ms protobuf audio frames (the last one padded)."""
    return [
        audio_frame(pcm16[i : i + FRAME_BYTES].ljust(FRAME_BYTES, b"\0"))
        for i in range(0, len(pcm16), FRAME_BYTES)
    ]


SILENCE_FRAME_PCM = bytes(FRAME_BYTES)
# A line's hiss at -60 dBFS (white noise), for callers who are not digitally silent between turns.
LINE_NOISE_FRAME_PCM = noise_pcm16(FRAME_SECS, SAMPLE_RATE, level=33, seed=3)
# What every caller sends between utterances (bench.run --line-noise picks the hiss).
pause_frame_pcm = SILENCE_FRAME_PCM


def audio_frame(pcm16: bytes) -> bytes:
    frame = frame_protos.Frame()
    frame.audio.audio = pcm16
    frame.audio.sample_rate = SAMPLE_RATE
    frame.audio.num_channels = 1
    return frame.SerializeToString()


@dataclass
class Playback:
    """A caller's playback buffer for one reply: starts at the first audio byte, plays at real time.

    A chunk that arrives after everything before it has played leaves the speaker silent; a gap
    longer than `UNDERRUN_SECS` is an underrun (a stutter the caller hears).
    """

    buffered_until: float = 0.0  # when the audio received so far will have finished playing
    underruns: list[float] = field(default_factory=list)  # each gap's length, seconds

    def add(self, arrived_at: float, secs: float) -> None:
        if self.buffered_until and arrived_at - self.buffered_until > UNDERRUN_SECS:
            self.underruns.append(arrived_at - self.buffered_until)
        self.buffered_until = max(self.buffered_until, arrived_at) + secs


@dataclass
class Utterance:
    ended_at: float
    first_reply_audio_at: float | None = None
    playback: Playback = field(default_factory=Playback)

    @property
    def latency(self) -> float | None:
        if self.first_reply_audio_at is None:
            return None
        latency = self.first_reply_audio_at - self.ended_at
        return latency if latency <= ANSWER_WINDOW_SECS else None

    @property
    def stuttered(self) -> bool:
        return bool(self.playback.underruns)

    @property
    def smooth(self) -> bool:
        """Answered in time, and played without an underrun."""
        return self.latency is not None and not self.stuttered


@dataclass
class Client:
    url: str
    speech: list[bytes]  # pre-serialised frames
    silence: bytes
    pause_secs: float
    utterances: list[Utterance] = field(default_factory=list)
    errors: int = 0
    _listening: bool = False  # between the end of an utterance and the start of the next one

    async def run(self, until: float, connect_delay: float, phase: float) -> None:
        await asyncio.sleep(connect_delay)
        try:
            async with connect(self.url, max_size=None, compression=None) as ws:
                reader = asyncio.create_task(self._read(ws))
                await asyncio.sleep(phase)
                next_at = time.monotonic()
                while time.monotonic() < until:
                    self._listening = False  # audio from here on is no longer the last reply
                    for frame in self.speech:
                        await ws.send(frame)
                        next_at = await tick(next_at)
                    self.utterances.append(Utterance(ended_at=time.monotonic()))
                    self._listening = True
                    for _ in range(int(self.pause_secs / FRAME_SECS)):
                        await ws.send(self.silence)
                        next_at = await tick(next_at)
                reader.cancel()
        except (ConnectionClosed, OSError):
            self.errors += 1

    async def _read(self, ws) -> None:
        with contextlib.suppress(ConnectionClosed):  # the sender sees it too, and counts it
            await self._read_replies(ws)

    async def _read_replies(self, ws) -> None:
        last_audio = 0.0
        async for message in ws:
            now = time.monotonic()
            frame = frame_protos.Frame()
            frame.ParseFromString(message)
            if frame.WhichOneof("frame") != "audio":
                continue
            current = self.utterances[-1] if self.utterances and self._listening else None
            # Audio after a pause starts the reply; audio before it is the tail of an earlier reply.
            if (
                current is not None
                and current.first_reply_audio_at is None
                and now - last_audio > NEW_REPLY_GAP_SECS
            ):
                current.first_reply_audio_at = now
            if current is not None and current.first_reply_audio_at is not None:
                current.playback.add(now, audio_secs(frame.audio))
            last_audio = now


def audio_secs(audio: frame_protos.AudioRawFrame) -> float:
    return len(audio.audio) / 2 / max(audio.num_channels, 1) / audio.sample_rate


async def tick(next_at: float) -> float:
    """Sleep until the next 20 ms frame is due (real-time pacing without drift)."""
    next_at += FRAME_SECS
    await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    return next_at


async def run_clients(
    url: str,
    speech_pcm16: bytes,
    *,
    clients: int,
    seconds: float,
    pause_secs: float,
    phase: float | None = None,
) -> list[Client]:
    """`clients` concurrent talkers for `seconds`, connecting 4 per second at random phases."""
    speech = speech_frames(speech_pcm16)
    silence = audio_frame(pause_frame_pcm)
    until = time.monotonic() + seconds
    talkers = [Client(url, speech, silence, pause_secs) for _ in range(clients)]
    rng = random.Random(1)
    await asyncio.gather(
        *(
            talker.run(
                until, connect_delay=i / 4, phase=rng.uniform(0, pause_secs) if phase is None else phase
            )
            for i, talker in enumerate(talkers)
        )
    )
    return talkers
