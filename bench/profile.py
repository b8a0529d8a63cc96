"""Profile our server under load with py-spy and print the top of the profile.

    python -m bench.profile --sessions 40 --seconds 30

Where the CPU goes at a given load (bench/README.md quotes the top of this).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from bench.fakes_process import running_fakes
from bench.loadgen import run_clients
from bench.run import UTTERANCE, Server
from tests.support.speech import speech_pcm16


def top_functions(raw_profile: Path, count: int) -> list[tuple[float, str]]:
    """Self time per function from py-spy's raw (collapsed stacks) output."""
    totals: collections.Counter[str] = collections.Counter()
    grand = 0
    for line in raw_profile.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        leaf = stack.split(";")[-1]
        totals[leaf] += int(samples)
        grand += int(samples)
    return [(100 * n / grand, name) for name, n in totals.most_common(count)]


def inclusive_functions(raw_profile: Path, count: int) -> list[tuple[float, str]]:
    """Time spent in each function and everything it calls (each stack counted once per function)."""
    totals: collections.Counter[str] = collections.Counter()
    grand = 0
    for line in raw_profile.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        for name in set(stack.split(";")):
            totals[name] += int(samples)
        grand += int(samples)
    return [(100 * n / grand, name) for name, n in totals.most_common(count)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=40)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--inclusive", type=int, default=40)
    args = parser.parse_args()
    with running_fakes() as fakes:
        profile(args, fakes)


def profile(args: argparse.Namespace, fakes: dict[str, str]) -> None:
    server = Server("ours", fakes)
    server.start()
    speech = speech_pcm16(UTTERANCE, pad_secs=0.0)
    output = Path(tempfile.mkdtemp()) / "profile.txt"
    try:
        load = threading.Thread(
            target=lambda: asyncio.run(
                run_clients(f"ws://127.0.0.1:{server.port}/ws", speech, clients=args.sessions,
                            seconds=args.seconds + args.sessions / 4 + 10, pause_secs=4.0)
            )
        )  # fmt: skip
        load.start()
        import time

        time.sleep(args.sessions / 4 + 8)
        py_spy = Path(sys.executable).parent / "py-spy"
        subprocess.run(
            [str(py_spy), "record", "--pid", str(server.process.pid), "--duration", str(args.seconds),
             "--rate", "100", "--format", "raw", "--output", str(output), "--nonblocking"],
            check=True, capture_output=True,
        )  # fmt: skip
        load.join()
    finally:
        server.stop()
    print(f"Raw profile: {output}")
    print(f"Top {args.top} functions by self time, ours at {args.sessions} sessions:")
    for share, name in top_functions(output, args.top):
        print(f"{share:5.1f}%  {name}")
    print(f"\nTop {args.inclusive} functions including their callees:")
    for share, name in inclusive_functions(output, args.inclusive):
        print(f"{share:5.1f}%  {name}")


if __name__ == "__main__":
    main()
