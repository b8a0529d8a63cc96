"""Run our server or the baseline with a `/stats` route: event-loop lag sampled inside the server.

python -m bench.serve ours|baseline --port 8100
"""

from __future__ import annotations

import argparse
import asyncio
import os

import numpy as np
import uvicorn
from fastapi import FastAPI

from bench.looplag import LoopLagMonitor
from processors.silero_batcher import SileroBatcher


def add_stats(app: FastAPI, monitor: LoopLagMonitor) -> None:
    @app.get("/stats")
    async def stats(reset: bool = False) -> dict:
        samples = np.array(monitor.samples or [0.0]) * 1000
        result = {
            "loop_lag_ms_p50": float(np.percentile(samples, 50)),
            "loop_lag_ms_p99": float(np.percentile(samples, 99)),
            "loop_lag_ms_max": float(samples.max()),
            "samples": len(monitor.samples),
        }
        batcher = SileroBatcher.of_running_loop()
        if batcher is not None and batcher.runs:
            result["vad_windows_per_inference"] = batcher.windows / batcher.runs
        if reset:
            monitor.samples.clear()
        return result


def build(kind: str) -> FastAPI:
    if kind == "baseline":
        from bench.baseline import create_baseline_app

        return create_baseline_app()
    from bots.server import create_app
    from pipeline.settings import load_settings

    return create_app(load_settings())


async def serve(kind: str, port: int) -> None:
    app = build(kind)
    monitor = LoopLagMonitor()
    add_stats(app, monitor)
    task = asyncio.create_task(monitor.run())
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", ws_per_message_deflate=False
    )
    await uvicorn.Server(config).serve()
    task.cancel()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["ours", "baseline"])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    import sys

    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level=os.environ.get("BENCH_LOG_LEVEL", "WARNING"))  # DEBUG to look inside
    asyncio.run(serve(args.kind, args.port))


if __name__ == "__main__":
    main()
