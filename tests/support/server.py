"""The real server in a subprocess, its log captured, for end-to-end tests."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from pipeline.settings import OWNED_PREFIXES

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# Lines that must never appear in a clean session's log.
UNCLEAN_LOG = re.compile(
    r"Traceback|CancelledError|exception was never retrieved|dangling task|Task was destroyed",
    re.IGNORECASE,
)


def fake_services_env(deepgram_url: str, openai_url: str) -> dict[str, str]:
    """The settings that point the server at the Deepgram and OpenAI fakes."""
    return {"DEEPGRAM_API_KEY": "test-key", "DEEPGRAM_BASE_URL": deepgram_url, "OPENAI_BASE_URL": openai_url}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`voicebot serve` on a free loopback port, with a clean environment and a log file.

    It runs in an empty working directory so a developer's `.env` never leaks into tests.
    """

    def __init__(
        self,
        env: dict[str, str] | None = None,
        startup_timeout: float = 180.0,
        args: tuple[str, ...] = (),
        host: str = "127.0.0.1",
    ):
        """`host` other than 127.0.0.1 (e.g. 127.0.0.2) plays a public bind: credentials apply."""
        self.port = free_port()
        self.base_url = f"http://{host}:{self.port}"
        self.ws_url = f"ws://{host}:{self.port}"
        if host != "127.0.0.1":
            args = ("--host", host, *args)
        self._workdir = tempfile.TemporaryDirectory(prefix="voicebot-test-")
        self.log_path = Path(self._workdir.name) / "server.log"
        keep = {k: v for k, v in os.environ.items() if not k.startswith(OWNED_PREFIXES)}
        # The code under test, not whatever checkout the venv's editable install points at.
        path = os.pathsep.join(p for p in (str(PROJECT_ROOT), keep.get("PYTHONPATH")) if p)
        self._env = {**keep, "PYTHONPATH": path, "VOICEBOT_LOG_LEVEL": "DEBUG", **(env or {})}
        self._startup_timeout = startup_timeout
        self._args = args
        self._process: subprocess.Popen | None = None

    def start(self) -> ServerProcess:
        log = self.log_path.open("w")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bots.cli", "serve", "--port", str(self.port), *self._args],
            cwd=self._workdir.name, env=self._env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"server exited at start-up:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/healthz", timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not become healthy:\n{self.log()}")

    @property
    def pid(self) -> int:
        """The server process (for its RSS and CPU time under /proc)."""
        assert self._process is not None
        return self._process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, pattern: str, timeout: float = 10.0, start: int = 0) -> re.Match:
        """Wait until the log (from character `start`) matches `pattern`."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.log()[start:])
            if match or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert match, f"log never matched {pattern!r}:\n{self.log()[start:][-4000:]}"
        return match

    def session_of_call(self, call_sid: str, start: int = 0, timeout: float = 10.0) -> str:
        """The server-side session id the call `call_sid` was given."""
        return self.wait_for_log(
            rf"Call {call_sid} connected \(stream \w+\) as session (\w+)", timeout, start
        )[1]

    def unclean_lines(self, start: int = 0) -> list[str]:
        return [line for line in self.log()[start:].splitlines() if UNCLEAN_LOG.search(line)]

    def stop(self) -> int | None:
        if self._process is None:
            return None
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        return self._process.returncode
