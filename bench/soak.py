"""Soak: many sessions for a long time, ending every way a session can end.

    python -m bench.soak --minutes 10 --sessions 20

Each of `--sessions` slots runs one session after another until the time is up. A session talks
for a few turns (real speech at real-time pace, 20 ms frames, replies awaited), then ends one of
four ways, chosen at random: the client hangs up; the client goes quiet (idle timeout); the
client keeps streaming silence (silence timeout, after a re-prompt); or it keeps talking until
the maximum session length. Checked at the end:

- memory is stable: the server's RSS, sampled every 10 s, does not trend upwards once warm;
- every session ended with the reason its plan called for, as the client was told it
  (`session-ended`) and as the server logged it (one `Session … ended: reason=…` line each);
- the server log has no error line, traceback, `CancelledError` or never-retrieved task;
- nothing is left over: `/readyz` reports 0 active sessions once the clients are gone.

Prints a summary and writes `bench/results/soak-<date>.json`. Services are the protocol-faithful
Deepgram and OpenAI fakes (`bench/fakes_process.py`), as in `bench/run.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import re
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pipecat.frames.protobufs.frames_pb2 as frame_protos
import psutil
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from bench.fakes_process import running_fakes
from bench.loadgen import FRAME_SECS, SILENCE_FRAME_PCM, audio_frame, speech_frames, tick
from bench.run import RESULTS, ROOT, UTTERANCE, Server
from tests.support.server import UNCLEAN_LOG
from tests.support.speech import speech_pcm16

IDLE_TIMEOUT_SECS = 5.0
SILENCE_TIMEOUT_SECS = 5.0
MAX_SESSION_SECS = 45.0
PLANS = {  # how a session ends -> the reason the server must give
    "hangup": "client_hangup",
    "goes_quiet": "idle_timeout",
    "streams_silence": "silence_timeout",
    "talks_on": "max_duration",
}
ENDED_LINE = re.compile(r"Session (\w+) ended: reason=(\w+)")
RSS_PERIOD_SECS = 10.0
WARM_UP_SECS = 120.0  # allocator and caches grow while the slots fill up; the trend is read after


@dataclass
class SessionRecord:
    plan: str
    turns: int = 0
    answered: int = 0
    told_reason: str | None = None
    close_code: int | None = None
    error: str | None = None
    events: list[str] = field(default_factory=list)


class SoakSession:
    """One client session following its plan, recording what the server told it."""

    def __init__(self, url: str, speech: list[bytes], plan: str, turns: int):
        self.url, self.speech, self.turns = url, speech, turns
        self.record = SessionRecord(plan=plan)
        self.silence = audio_frame(SILENCE_FRAME_PCM)
        self._reply_audio_at = 0.0
        self._ended = asyncio.Event()

    async def run(self) -> SessionRecord:
        try:
            async with connect(self.url, max_size=None, compression=None) as ws:
                reader = asyncio.create_task(self._read(ws))
                await self._follow_plan(ws)
                await reader
        except (ConnectionClosed, OSError) as error:
            self.record.error = self.record.error or f"{type(error).__name__}: {error}"
        return self.record

    async def _follow_plan(self, ws) -> None:
        plan = self.record.plan
        turn = 0
        while not self._ended.is_set() and (plan == "talks_on" or turn < self.turns):
            turn += 1
            await self._stream(ws, self.speech)
            asked_at = time.monotonic()
            await self._stream(ws, [self.silence] * int(3.0 / FRAME_SECS))
            if self._ended.is_set():
                break  # the session ended during this turn (max duration): not a turn to answer
            self.record.turns += 1
            if self._reply_audio_at > asked_at:
                self.record.answered += 1
        if plan == "hangup":
            await ws.close()
        elif plan == "streams_silence":
            while not self._ended.is_set():
                await self._stream(ws, [self.silence] * 10)
        # "goes_quiet" sends nothing more; "talks_on" talked until the server ended it.
        await asyncio.wait_for(self._ended.wait(), timeout=60)

    async def _stream(self, ws, frames: list[bytes]) -> None:
        next_at = time.monotonic()
        for frame in frames:
            if self._ended.is_set():
                return
            try:
                await ws.send(frame)
            except ConnectionClosed:
                self._ended.set()  # the reader still drains what arrived before the close
                return
            next_at = await tick(next_at)

    async def _read(self, ws) -> None:
        try:
            async for message in ws:
                frame = frame_protos.Frame()
                frame.ParseFromString(message)
                kind = frame.WhichOneof("frame")
                if kind == "audio":
                    self._reply_audio_at = time.monotonic()
                elif kind == "message":
                    data = json.loads(frame.message.data)
                    if data.get("type") == "server-message" and data["data"].get("type") == "session-ended":
                        self.record.told_reason = data["data"]["reason"]
                        await ws.close()  # as the page does once the goodbye has played
        except ConnectionClosed:
            pass
        finally:
            self.record.close_code = ws.close_code
            self._ended.set()


async def run_slots(url: str, speech: list[bytes], slots: int, seconds: float, rng: random.Random) -> list:
    records: list[SessionRecord] = []
    until = time.monotonic() + seconds

    async def slot(index: int) -> None:
        await asyncio.sleep(index * 0.5)
        while time.monotonic() < until:
            plan = rng.choice(list(PLANS))
            records.append(await SoakSession(url, speech, plan, turns=rng.randint(1, 4)).run())

    await asyncio.gather(*(slot(i) for i in range(slots)))
    return records


def rss_trend_mb_per_min(samples: list[tuple[float, float]]) -> float:
    times, rss = np.array([t for t, _ in samples]), np.array([r for _, r in samples])
    return float(np.polyfit(times / 60, rss, 1)[0]) if len(samples) > 2 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--sessions", type=int, default=20, help="concurrent sessions")
    args = parser.parse_args()

    with running_fakes() as fakes:
        soak(args, fakes)


def soak(args: argparse.Namespace, fakes: dict[str, str]) -> None:
    server = Server("ours", fakes)
    server.env.update(
        {
            "BENCH_LOG_LEVEL": "INFO",
            "VOICEBOT_IDLE_TIMEOUT_SECS": str(IDLE_TIMEOUT_SECS),
            "VOICEBOT_SILENCE_TIMEOUT_SECS": str(SILENCE_TIMEOUT_SECS),
            "VOICEBOT_MAX_SESSION_SECS": str(MAX_SESSION_SECS),
        }
    )
    log_path = Path(tempfile.mkdtemp()) / "server.log"
    with log_path.open("w") as log:
        server.start(stderr=log)
    pcm = speech_pcm16(UTTERANCE, pad_secs=0.0)
    speech = speech_frames(pcm)
    samples: list[tuple[float, float]] = []
    started = time.monotonic()

    async def sample_rss() -> None:
        while True:
            samples.append((time.monotonic() - started, server.rss_mb()))
            await asyncio.sleep(RSS_PERIOD_SECS)

    async def soak() -> list[SessionRecord]:
        sampler = asyncio.create_task(sample_rss())
        try:
            return await run_slots(
                f"ws://127.0.0.1:{server.port}/ws", speech, args.sessions, args.minutes * 60, random.Random(7)
            )
        finally:
            sampler.cancel()

    try:
        records = asyncio.run(soak())
        time.sleep(2)
        with urllib.request.urlopen(f"{server.url}/readyz", timeout=5) as response:
            active_after = json.load(response)["active_sessions"]
        server_alive = server.process.poll() is None
    finally:
        server.stop()
    log_text = log_path.read_text()
    report = summarise(args, records, samples, log_text, active_after, server_alive, psutil.cpu_count())
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"soak-{report['date'].replace(':', '')}.json"
    path.write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "sessions_detail"}, indent=2))
    print(f"wrote {path.relative_to(ROOT)}")
    sys.exit(0 if report["passed"] else 1)


def summarise(args, records, samples, log_text, active_after, server_alive, cpus) -> dict:
    server_reasons = collections.Counter(reason for _, reason in ENDED_LINE.findall(log_text))
    mismatched = [r for r in records if r.plan != "hangup" and r.told_reason != PLANS[r.plan]]
    error_lines = [line for line in log_text.splitlines() if UNCLEAN_LOG.search(line) or "| ERROR" in line]
    warning_lines = [line for line in log_text.splitlines() if "| WARNING" in line]
    warm = [(t, rss) for t, rss in samples if t >= WARM_UP_SECS]
    turns = sum(r.turns for r in records)
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": f"python -m bench.soak --minutes {args.minutes:g} --sessions {args.sessions}",
        "cpus": cpus,
        "minutes": args.minutes,
        "concurrent_sessions": args.sessions,
        "sessions": len(records),
        "sessions_by_plan": dict(collections.Counter(r.plan for r in records)),
        "server_end_lines_by_reason": dict(server_reasons),
        "server_end_lines": sum(server_reasons.values()),
        "client_told_wrong_or_no_reason": len(mismatched),
        "client_errors": sum(1 for r in records if r.error),
        "turns": turns,
        "turns_answered_share": round(sum(r.answered for r in records) / max(turns, 1), 4),
        "rss_mb_first_warm_sample": warm[0][1] if warm else None,
        "rss_mb_last_sample": samples[-1][1] if samples else None,
        "rss_mb_max": max((rss for _, rss in samples), default=None),
        "rss_trend_mb_per_min_when_warm": round(rss_trend_mb_per_min(warm), 2),
        "server_error_lines": len(error_lines),
        "server_error_examples": error_lines[:5],
        "server_warning_lines": len(warning_lines),
        "server_warning_examples": warning_lines[:5],
        "active_sessions_after": active_after,
        "server_alive": server_alive,
        "sessions_detail": [r.__dict__ for r in records],
    }
    report["passed"] = (
        server_alive
        and active_after == 0
        and not error_lines
        and not mismatched
        and report["client_errors"] == 0
        and report["server_end_lines"] == len(records)
        and report["rss_trend_mb_per_min_when_warm"] < 1.0
    )
    return report


if __name__ == "__main__":
    main()
