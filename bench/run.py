"""`make bench`: our server and a plain Pipecat bot, side by side in the same run.

Measures latency overhead, capacity (sessions per process that still hold real time), memory
per session, start-up, and our server on two worker processes. Prints tables and writes
bench/results/<timestamp>.json. See bench/README.md for the method and the last results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psutil

from bench.loadgen import run_clients
from pipeline.settings import OWNED_PREFIXES
from tests.support.server import free_port
from tests.support.speech import speech_pcm16

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
UTTERANCE = "What time does the museum open tomorrow morning?"  # 2.5 s; smart-turn: complete
VOICEBOT_VAD_STOP_SECS = 0.2  # the stop window both servers use; the fakes add no delay
WARMUP_SECS = 8.0
# Answered, but seconds late, is not real time: the reference notes' baseline broke with "replies
# 3+ s late" while loop lag stayed low. A point holds only if replies stay prompt too.
MAX_LATENCY_P95_SECS = 1.0


class Server:
    """One server process (ours or the baseline) on the fakes, with CPU and memory readings."""

    def __init__(self, kind: str, fakes: dict | None, workers: int = 1):
        """`fakes=None`: no cloud services at all, so our server runs the embedded offline stack."""
        self.kind, self.workers = kind, workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        keep = {k: v for k, v in os.environ.items() if not k.startswith(OWNED_PREFIXES)}
        cloud = {
            "DEEPGRAM_API_KEY": "test-key", "DEEPGRAM_BASE_URL": fakes["deepgram"],
            "OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": fakes["openai"],
        } if fakes else {}  # fmt: skip
        self.env = {
            **keep,
            **cloud,
            "VOICEBOT_GREETING": "", "VOICEBOT_LOG_LEVEL": "WARNING",
            "VOICEBOT_IDLE_TIMEOUT_SECS": "0", "VOICEBOT_SILENCE_TIMEOUT_SECS": "0",
            "VOICEBOT_MAX_SESSIONS": "1000",  # measure capacity, not our admission limit
        }  # fmt: skip

    def start(self, stderr=subprocess.DEVNULL) -> float:
        """Start; return seconds from process start to healthy."""
        started = time.monotonic()
        if self.workers == 1:
            command = [sys.executable, "-m", "bench.serve", self.kind, "--port", str(self.port)]
        else:
            command = [
                sys.executable,
                "-m",
                "bots.cli",
                "serve",
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
            ]
        self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, stderr=stderr)
        while time.monotonic() - started < 120:
            try:
                urllib.request.urlopen(f"{self.url}/healthz", timeout=1).close()
                return time.monotonic() - started
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.kind} did not start")

    def processes(self) -> list[psutil.Process]:
        root = psutil.Process(self.process.pid)
        return [root, *root.children(recursive=True)]

    def rss_mb(self) -> float:
        return sum(p.memory_info().rss for p in self.processes()) / 2**20

    def stats(self, reset: bool = False) -> dict | None:
        if self.workers != 1:
            return None  # lag is sampled per process; with several workers we report the rest
        with urllib.request.urlopen(f"{self.url}/stats?reset={str(reset).lower()}", timeout=5) as response:
            return json.load(response)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def summarise_turns(talkers, measure_from: float) -> dict:
    utterances = [u for t in talkers for u in t.utterances if u.ended_at >= measure_from]
    latencies = [u.latency for u in utterances if u.latency is not None]
    answered = len(latencies) / max(len(utterances), 1)
    return {
        "turns": len(utterances),
        "answered": round(answered, 4),
        "latency_s_p50": round(float(np.percentile(latencies, 50)), 3) if latencies else None,
        "latency_s_p95": round(float(np.percentile(latencies, 95)), 3) if latencies else None,
        "errors": sum(t.errors for t in talkers),
    }


def load(
    server: Server,
    speech: bytes,
    clients: int,
    seconds: float,
    pause: float,
    max_p95: float = MAX_LATENCY_P95_SECS,
) -> dict:
    """Run `clients` talkers; measure after the warm-up, sampling the server's CPU and lag."""
    measure_from = time.monotonic() + WARMUP_SECS + clients / 4

    async def drive():
        run = asyncio.create_task(
            run_clients(
                f"ws://127.0.0.1:{server.port}/ws", speech, clients=clients, seconds=seconds, pause_secs=pause
            )
        )
        await asyncio.sleep(max(0.0, measure_from - time.monotonic()))
        server.stats(reset=True)
        procs = server.processes()
        for p in procs:
            p.cpu_percent(None)
        load_generator.cpu_percent(None)
        window_start = time.monotonic()
        talkers = await run
        cpu = sum(p.cpu_percent(None) for p in procs)
        return talkers, cpu, load_generator.cpu_percent(None), time.monotonic() - window_start

    load_generator = psutil.Process()  # the clients run in this process, on the same cores
    talkers, cpu, load_cpu, window = asyncio.run(drive())
    result = {"sessions": clients, **summarise_turns(talkers, measure_from), "cpu_percent": round(cpu, 1),
              "load_generator_cpu_percent": round(load_cpu, 1),
              "rss_mb": round(server.rss_mb(), 1), "window_s": round(window, 1)}  # fmt: skip
    stats = server.stats()
    if stats:
        result.update({k: round(v, 1) for k, v in stats.items() if k.startswith(("loop", "vad"))})
    result["holds"] = (
        result["answered"] >= 0.99
        and result["errors"] == 0
        and (result["latency_s_p95"] or 0) <= max_p95
        and (stats is None or stats["loop_lag_ms_p99"] < 100)
    )
    return result


def vad_decision_secs(speech: bytes) -> float:
    """When Silero (Pipecat's own analyzer, the stop window both servers use) declares the end of
    speech, counted from the clip's last frame, with silence following as the clients send it.

    This is the part of voice-to-voice latency no pipeline can avoid; the rest is overhead.
    (It is less than the stop window: the clip ends in a quiet tail that already counts.)
    """
    from pipecat.audio.vad.silero import SileroVADAnalyzer
    from pipecat.audio.vad.vad_analyzer import VADParams, VADState

    analyzer = SileroVADAnalyzer(params=VADParams(stop_secs=VOICEBOT_VAD_STOP_SECS))
    analyzer.set_sample_rate(16000)
    audio, frame = speech + bytes(32000 * 2), 640
    states = [analyzer._run_analyzer(audio[i : i + frame]) for i in range(0, len(audio), frame)]
    last_speaking = max(i for i, state in enumerate(states) if state != VADState.QUIET)
    return (last_speaking + 1) * frame / 32000 - len(speech) / 32000


def latency_overhead(server: Server, speech: bytes, turns: int) -> dict:
    """One session, `turns` turns: voice-to-voice minus the VAD's own decision time (fakes add nothing)."""
    seconds = turns * (len(speech) / 32000 + 2.5) + WARMUP_SECS
    result = load(server, speech, clients=1, seconds=seconds, pause=2.5)
    result["vad_decision_s"] = floor = round(vad_decision_secs(speech), 3)
    for key in ("latency_s_p50", "latency_s_p95"):
        if result[key] is not None:
            result[key.replace("latency", "overhead")] = round(result[key] - floor, 3)
    return result


def capacity(
    server: Server, speech: bytes, sweep: list[int], seconds: float, max_p95: float = MAX_LATENCY_P95_SECS
) -> list[dict]:
    rows = []
    idle_rss = server.rss_mb()
    for clients in sweep:
        row = load(server, speech, clients, seconds + WARMUP_SECS + clients / 4, pause=4.0, max_p95=max_p95)
        row["rss_per_session_mb"] = round((row["rss_mb"] - idle_rss) / clients, 1)
        rows.append(row)
        print(f"  {server.kind} x{server.workers} N={clients}: {row}", flush=True)
        if not row["holds"]:
            break
    return rows


def startup_to_first_answer(kind: str, fakes: dict, speech: bytes) -> dict:
    """Process start → healthy, and then how fast the very first question is answered."""
    server = Server(kind, fakes)
    healthy_after = server.start()
    try:
        url = f"ws://127.0.0.1:{server.port}/ws"
        seconds = len(speech) / 32000 + 3
        talkers = asyncio.run(run_clients(url, speech, clients=1, seconds=seconds, pause_secs=3, phase=0.0))
        first_reply = talkers[0].utterances[0].latency
    finally:
        server.stop()
    total = healthy_after + first_reply if first_reply is not None else None
    return {
        "healthy_s": round(healthy_after, 2),
        "first_reply_latency_s": first_reply and round(first_reply, 3),
        "process_start_to_first_answer_s": total and round(total, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sweep", default="10,20,30,40,50", help="session counts for the capacity sweep")
    parser.add_argument("--seconds", type=float, default=30.0, help="measurement window per point")
    parser.add_argument("--turns", type=int, default=30, help="turns for the latency benchmark")
    parser.add_argument("--workers-sweep", default="40,60,80", help="2-worker session counts; '' skips")
    parser.add_argument("--kinds", default="baseline,ours", help="which servers to measure")
    parser.add_argument("--quick", action="store_true", help="capacity only: no start-up, latency or workers")
    parser.add_argument(
        "--offline", action="store_true", help="capacity of ours on the embedded offline stack (no fakes)"
    )
    args = parser.parse_args()
    sweep = [int(n) for n in args.sweep.split(",")]
    if args.offline:
        offline_capacity(sweep, args.seconds)
        return

    fakes_process = subprocess.Popen(
        [sys.executable, "-m", "bench.fakes_process"], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    fakes = json.loads(fakes_process.stdout.readline())
    speech = speech_pcm16(UTTERANCE, pad_secs=0.0)  # the clock starts at the last speech frame
    machine = {"cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1)}
    report: dict = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "utterance_secs": len(speech) / 32000,
    }
    try:
        for kind in args.kinds.split(","):
            print(f"== {kind}", flush=True)
            entry = report[kind] = {}
            if not args.quick:
                entry["startup"] = startup_to_first_answer(kind, fakes, speech)
            server = Server(kind, fakes)
            server.start()
            try:
                entry["idle_rss_mb"] = round(server.rss_mb(), 1)
                if not args.quick:
                    entry["latency"] = latency_overhead(server, speech, args.turns)
                    print(f"  latency: {entry['latency']}", flush=True)
                entry["capacity"] = capacity(server, speech, sweep, args.seconds)
            finally:
                server.stop()
        if args.quick or not args.workers_sweep:
            return
        print("== ours, 2 workers", flush=True)
        server = Server("ours", fakes, workers=2)
        server.start()
        try:
            report["ours_2_workers"] = {
                "capacity": capacity(
                    server, speech, [int(n) for n in args.workers_sweep.split(",")], args.seconds
                )
            }
        finally:
            server.stop()
    finally:
        fakes_process.terminate()
    summarise(report)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{report['date'].replace(':', '')}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"wrote {path.relative_to(ROOT)}")


def offline_capacity(sweep: list[int], seconds: float) -> None:
    """The embedded stack's capacity, measured as the cloud stack's: same clients, same rule,
    except that its replies are slower by nature (speech recognition and the LLM on this CPU),
    so a point holds while p95 stays within 1.5x of one session's p95 (and at least 1 s)."""
    speech = speech_pcm16(UTTERANCE, pad_secs=0.0)
    server = Server("ours", None)
    server.start()
    rows: list[dict] = []
    try:
        idle_rss = server.rss_mb()
        single = load(server, speech, 1, 20 + WARMUP_SECS, pause=4.0)
        max_p95 = max(MAX_LATENCY_P95_SECS, 1.5 * (single["latency_s_p95"] or 0))
        print(f"  offline N=1: {single}; a point holds with p95 <= {max_p95:.2f}s", flush=True)
        rows = capacity(server, speech, sweep, seconds, max_p95=max_p95)
    finally:
        server.stop()
    report = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "stack": "offline",
              "idle_rss_mb": round(idle_rss, 1), "single": single, "max_p95_s": round(max_p95, 3),
              "capacity": rows, "sessions_held": held(rows)}  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"offline-{report['date'].replace(':', '')}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"offline stack holds {held(rows)} sessions; wrote {path.relative_to(ROOT)}")


def held(rows: list[dict]) -> int:
    return max((r["sessions"] for r in rows if r["holds"]), default=0)


def summarise(report: dict) -> None:
    base, ours = report["baseline"], report["ours"]
    report["summary"] = summary = {
        "sessions_held_baseline": held(base["capacity"]),
        "sessions_held_ours": held(ours["capacity"]),
        "sessions_held_ours_2_workers": held(report["ours_2_workers"]["capacity"]),
        "overhead_p95_s_baseline": base["latency"].get("overhead_s_p95"),
        "overhead_p95_s_ours": ours["latency"].get("overhead_s_p95"),
        "startup_s_baseline": base["startup"]["process_start_to_first_answer_s"],
        "startup_s_ours": ours["startup"]["process_start_to_first_answer_s"],
    }
    if summary["sessions_held_baseline"]:
        summary["capacity_ratio"] = round(
            summary["sessions_held_ours"] / summary["sessions_held_baseline"], 2
        )
    print("\n| | baseline (plain Pipecat) | ours |\n|---|---|---|")
    for label, key in (
        ("latency overhead p50 (s)", "overhead_s_p50"),
        ("latency overhead p95 (s)", "overhead_s_p95"),
    ):
        print(f"| {label} | {base['latency'].get(key)} | {ours['latency'].get(key)} |")
    held_line = f"{summary['sessions_held_baseline']} | {summary['sessions_held_ours']}"
    print(f"| sessions held, 1 process | {held_line} |")
    print(f"| start-up to first answer (s) | {summary['startup_s_baseline']} | {summary['startup_s_ours']} |")
    print(f"| ours, 2 workers: sessions held | | {summary['sessions_held_ours_2_workers']} |")
    for kind in ("baseline", "ours"):
        print(f"\n{kind}: N, answered, lag p99 ms, latency p50/p95 s, CPU %, RSS MB, MB/session")
        for r in report[kind]["capacity"]:
            latency = f"{r['latency_s_p50']}/{r['latency_s_p95']}"
            print(
                f"  {r['sessions']:3d}  {r['answered']:.3f}  {r.get('loop_lag_ms_p99')}  {latency}"
                f"  {r['cpu_percent']}  {r['rss_mb']}  {r['rss_per_session_mb']}"
            )


if __name__ == "__main__":
    main()
