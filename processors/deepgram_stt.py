"""Deepgram live STT that survives a dropped connection without losing what the user said.

Pipecat's `DeepgramSTTService` waits at least 4 s before reconnecting and sends audio only
while connected, so a drop mid-utterance loses seconds of speech (pipecat-1.14-api.md §0.7).
Here every audio chunk is kept until a final result covers it; after a drop we reconnect at
once, replay what is not yet final, and send the `Finalize` that was owed while disconnected.

Audio goes out in messages of up to 100 ms instead of one per 20 ms frame: each WebSocket
message costs the event loop a fixed overhead (the SDK call, framing, a socket write) whatever
its size, and Deepgram takes audio in chunks of any size.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator

from deepgram.core import ApiError
from deepgram.core.events import EventType
from deepgram.listen.v1.types import ListenV1Finalize, ListenV1KeepAlive, ListenV1Results
from loguru import logger
from pipecat.frames.frames import Frame, VADUserStartedSpeakingFrame, VADUserStoppedSpeakingFrame
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.deepgram.stt import DeepgramSTTService

REPLAY_CHUNK_BYTES = 32000  # 1 s of 16 kHz audio per message while replaying
BATCH_SECS = 0.1  # live audio per message, at most
KEEPALIVE_SECS = 5.0  # as Pipecat's: Deepgram closes a connection after 10 s without data
STABLE_CONNECTION_SECS = 5.0  # a connection that lasted this long resets the failure count
MAX_QUICK_FAILURES = 3


class ResilientDeepgramSTTService(DeepgramSTTService):
    """`DeepgramSTTService` with immediate reconnects and no lost audio.

    - Audio not yet covered by a final result is kept (up to `max_replay_secs`).
    - A dropped connection is re-opened at once (then after 0.5 s, 1 s...), and the kept audio
      is replayed on the new connection before live audio resumes, in order.
    - A `Finalize` due while disconnected (the user stopped speaking) is sent after the replay.
    - A rejected handshake (HTTP 4xx, e.g. a bad key) is permanent at once, as in Pipecat.
    - A recovered drop is one warning line, not an error the pipeline has to handle.
    - Live audio is sent in messages of up to `BATCH_SECS`, and at once when the VAD hears the
      user start or stop (so the `Finalize` follows all the audio, with no wait), before a
      `KeepAlive` and before the stream is closed.

    Example::

        stt = ResilientDeepgramSTTService(api_key=key, base_url=url, settings=...)
    """

    def __init__(self, *, max_replay_secs: float = 30.0, **kwargs):
        super().__init__(**kwargs)
        self._max_replay_secs = max_replay_secs
        self._unfinalised = bytearray()  # audio since the last final result, oldest first
        self._sent_on_connection = 0  # bytes the current connection has received
        self._batch = bytearray()  # live audio for the current connection, not sent yet
        self._finalize_owed = False

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame | None, None]:
        self._unfinalised.extend(audio)
        overflow = len(self._unfinalised) - int(self._max_replay_secs * self.sample_rate * 2)
        if overflow > 0:
            del self._unfinalised[:overflow]
        if self._connection is not None:  # else the replay on the next connection sends it
            self._batch.extend(audio)
            # Send before the next chunk of this size would take the message past BATCH_SECS.
            if len(self._batch) + len(audio) > int(BATCH_SECS * self.sample_rate) * 2:
                await self._send_batch()
        yield None

    async def _send_batch(self) -> None:
        """Send the audio batched for the current connection."""
        connection = self._connection
        if not self._batch or connection is None:
            return
        audio = bytes(self._batch)
        self._batch.clear()
        try:
            await connection.send_media(audio)
            self._sent_on_connection += len(audio)
        except Exception as e:
            logger.warning(f"{self}: send failed, reconnecting: {e}")
            self._connection = None

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        if isinstance(frame, VADUserStartedSpeakingFrame | VADUserStoppedSpeakingFrame):
            await self._send_batch()  # the speech's start without delay; its end before Finalize
        if isinstance(frame, VADUserStoppedSpeakingFrame) and self._connection is None:
            self._finalize_owed = True
        await super().process_frame(frame, direction)

    async def _disconnect(self):
        """Send what is batched, then Pipecat's close (`CloseStream`) on stop, cancel or reconnect."""
        await self._send_batch()
        await super()._disconnect()

    async def _keep_alive(self) -> None:
        """Pipecat's keepalive (`_keepalive_handler`), sending any batched audio first."""
        while True:
            await asyncio.sleep(KEEPALIVE_SECS)
            await self._send_batch()
            connection = self._connection
            if connection is not None:
                try:
                    await connection.send_keep_alive(ListenV1KeepAlive(type="KeepAlive"))
                except Exception as e:
                    logger.warning(f"{self}: keepalive failed: {e}")

    async def _on_message(self, message):
        if isinstance(message, ListenV1Results) and message.is_final:
            self._forget_finalised(message.start + message.duration)
        await super()._on_message(message)

    def _forget_finalised(self, covered_secs: float) -> None:
        """Drop the audio a final result covers; keep what the connection got after it."""
        covered = int(covered_secs * self.sample_rate) * 2
        still_open = max(0, self._sent_on_connection - covered) + len(self._batch)
        del self._unfinalised[: max(0, len(self._unfinalised) - still_open)]

    async def _on_connection_error(self, error) -> None:
        """A recovered drop is a warning, not an error frame (Pipecat's `_on_error` pushes one)."""
        logger.warning(f"{self}: connection lost, reconnecting: {error}")

    async def _resume(self, connection) -> None:
        """Replay unfinalised audio on a fresh connection, then let live audio through."""
        self._sent_on_connection = 0
        self._batch.clear()  # batched audio is unfinalised too: the replay sends it
        replayed = 0
        while replayed < len(self._unfinalised):
            chunk = bytes(self._unfinalised[replayed : replayed + REPLAY_CHUNK_BYTES])
            await connection.send_media(chunk)
            replayed += len(chunk)
        self._sent_on_connection = replayed
        # No await between the last replayed chunk and this line: live audio follows in order.
        self._connection = connection
        if replayed:
            seconds = replayed / 2 / self.sample_rate
            logger.info(f"{self}: replayed {seconds:.2f}s of audio after reconnecting")
        if self._finalize_owed:
            self._finalize_owed = False
            self.request_finalize()
            await connection.send_finalize(ListenV1Finalize(type="Finalize"))
            logger.info(f"{self}: sent the Finalize owed since the user stopped speaking while disconnected")

    async def _connection_handler(self):
        """Keep one live connection, reconnecting immediately after a drop."""
        failures = 0
        try:
            while True:
                connected_at = None
                keepalive = None
                try:
                    async with self._client.listen.v1.connect(**self._build_connect_kwargs()) as connection:
                        connected_at = time.monotonic()
                        connection.on(EventType.MESSAGE, self._on_message)
                        connection.on(EventType.ERROR, self._on_connection_error)
                        await self._resume(connection)
                        self._connection_settled.set()
                        keepalive = self.create_task(self._keep_alive(), f"{self}::keepalive")
                        await connection.start_listening()
                except ApiError as e:
                    if e.status_code is not None and 400 <= e.status_code < 500:
                        await self.push_error(
                            error_msg=f"Deepgram rejected the connection (HTTP {e.status_code})",
                            exception=e,
                            force_treat_as_permanent=True,
                        )
                        return
                    logger.warning(f"{self}: connection failed, retrying: {e}")
                except Exception as e:
                    logger.warning(f"{self}: connection lost, reconnecting: {e}")
                finally:
                    self._connection = None
                    if keepalive is not None:
                        await self.cancel_task(keepalive)

                uptime = time.monotonic() - connected_at if connected_at is not None else 0.0
                failures = 0 if uptime >= STABLE_CONNECTION_SECS else failures + 1
                if failures >= MAX_QUICK_FAILURES:
                    await self.push_error(
                        error_msg=f"could not keep a connection to Deepgram ({failures} failures in a row)",
                        force_treat_as_permanent=True,
                    )
                    return
                if failures > 1:
                    await asyncio.sleep(0.5 * 2 ** (failures - 2))
        finally:
            self._connection_settled.set()
