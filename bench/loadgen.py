"""Clients that talk like people: real speech at real-time pace in 20 ms frames, then listen.

Each client loops [utterance, pause] and records, per utterance, when its last speech frame was
sent and when the first bot audio of the reply arrived.
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

FRAME_SECS = 0.02
SAMPLE_RATE = 16000
ANSWER_WINDOW_SECS = 4.0  # a reply counts if it starts within this of the end of speech


FRAME_BYTES = int(SAMPLE_RATE * FRAME_SECS) * 2


def speech_frames(pcm16: bytes) -> list[bytes]:
    """A clip cut into serialised 20 ms protobuf audio frames (the last one padded)."""
    return [
        audio_frame(pcm16[i : i + FRAME_BYTES].ljust(FRAME_BYTES, b"\0"))
        for i in range(0, len(pcm16), FRAME_BYTES)
    ]


SILENCE_FRAME_PCM = bytes(FRAME_BYTES)


def audio_frame(pcm16: bytes) -> bytes:
    frame = frame_protos.Frame()
    frame.audio.audio = pcm16
    frame.audio.sample_rate = SAMPLE_RATE
    frame.audio.num_channels = 1
    return frame.SerializeToString()


@dataclass
class Utterance:
    ended_at: float
    first_reply_audio_at: float | None = None

    @property
    def latency(self) -> float | None:
        if self.first_reply_audio_at is None:
            return None
        latency = self.first_reply_audio_at - self.ended_at
        return latency if latency <= ANSWER_WINDOW_SECS else None


@dataclass
class Client:
    url: str
    speech: list[bytes]  # pre-serialised frames
    silence: bytes
    pause_secs: float
    utterances: list[Utterance] = field(default_factory=list)
    errors: int = 0

    async def run(self, until: float, connect_delay: float, phase: float) -> None:
        await asyncio.sleep(connect_delay)
        try:
            async with connect(self.url, max_size=None, compression=None) as ws:
                reader = asyncio.create_task(self._read(ws))
                await asyncio.sleep(phase)
                next_at = time.monotonic()
                while time.monotonic() < until:
                    for frame in self.speech:
                        await ws.send(frame)
                        next_at = await tick(next_at)
                    self.utterances.append(Utterance(ended_at=time.monotonic()))
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
            if self.utterances and now - last_audio > 0.5:  # a new reply starts
                current = self.utterances[-1]
                if current.first_reply_audio_at is None and now > current.ended_at:
                    current.first_reply_audio_at = now
            last_audio = now


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
    silence = audio_frame(SILENCE_FRAME_PCM)
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
