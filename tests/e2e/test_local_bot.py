"""`voicebot local` for real on this headless machine: PulseAudio virtual devices stand in for the
microphone (a pipe source fed a spoken question) and the speakers (a null sink we record)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.support.server import OWNED_PREFIXES, PROJECT_ROOT
from tests.support.speech import speech_pcm16, word_error_rate

QUESTION = "What is the capital of France?"
REPLY = "Paris is the capital of France."
GREETING = "Hello! How can I help you today?"


class VirtualAudio:
    """A private PulseAudio server: `mic` (a pipe we write to) and `speaker` (recorded by parec)."""

    def __init__(self, root: Path):
        self.root = root
        self.socket = root / "native"
        self.mic = root / "mic.pipe"
        self.env = {"PULSE_SERVER": f"unix:{self.socket}", "PULSE_RUNTIME_PATH": str(root / "run")}
        self._feeding = threading.Event()
        self._queue: list[bytes] = []
        self._lock = threading.Lock()
        self._recorder: subprocess.Popen | None = None
        self.recording = root / "speaker.raw"

    def start(self) -> None:
        if not shutil.which("pulseaudio") or not shutil.which("parec"):
            pytest.skip("PulseAudio is not installed (make test-deps installs it)")
        (self.root / "run").mkdir()
        result = subprocess.run(
            ["pulseaudio", "--daemonize=yes", "-n", "--exit-idle-time=-1", "--disable-shm=yes",
             f"--load=module-native-protocol-unix socket={self.socket} auth-anonymous=1",
             "--load=module-null-sink sink_name=speaker rate=24000 channels=1",
             f"--load=module-pipe-source source_name=mic file={self.mic} format=s16le rate=16000 channels=1",
             f"--log-target=file:{self.root / 'pulse.log'}"],
            env={**os.environ, **self.env}, capture_output=True, text=True, timeout=20,
        )  # fmt: skip
        if result.returncode != 0:
            pytest.skip(f"the PulseAudio server could not start here: {result.stderr.strip()[-300:]}")
        for command in (["pactl", "set-default-source", "mic"], ["pactl", "set-default-sink", "speaker"]):
            subprocess.run(command, env={**os.environ, **self.env}, check=True, timeout=10)
        self._recorder = subprocess.Popen(
            ["parec", "-d", "speaker.monitor", "--format=s16le", "--rate=24000", "--channels=1", "--raw"],
            env={**os.environ, **self.env}, stdout=self.recording.open("wb"),
        )  # fmt: skip
        self._feeding.set()
        threading.Thread(target=self._feed_microphone, daemon=True).start()

    def say(self, pcm16: bytes) -> None:
        with self._lock:
            self._queue.append(pcm16)

    def _feed_microphone(self) -> None:
        """Real-time microphone: 20 ms of queued speech or silence, every 20 ms."""
        frame = 640
        pending = b""
        next_at = time.monotonic()
        with open(self.mic, "wb", buffering=0) as mic:
            while self._feeding.is_set():
                if not pending:
                    with self._lock:
                        pending = self._queue.pop(0) if self._queue else b""
                chunk, pending = pending[:frame].ljust(frame, b"\0"), pending[frame:]
                mic.write(chunk)
                next_at += 0.02
                time.sleep(max(0.0, next_at - time.monotonic()))

    def speaker_seconds_of_sound(self) -> float:
        raw = self.recording.read_bytes()
        samples = np.frombuffer(raw[: len(raw) // 2 * 2], dtype=np.int16)
        windows = samples[: samples.size // 480 * 480].reshape(-1, 480).astype(np.float32)
        return float((np.sqrt((windows**2).mean(axis=1)) > 300).sum() * 0.02)

    def stop(self) -> None:
        self._feeding.clear()
        if self._recorder is not None:
            self._recorder.terminate()
            self._recorder.wait(10)
        subprocess.run(["pactl", "exit"], env={**os.environ, **self.env}, timeout=10, check=False)


@pytest.fixture
def audio(tmp_path):
    devices = VirtualAudio(tmp_path)
    devices.start()
    yield devices
    devices.stop()


def start_local_bot(env: dict[str, str], workdir: Path) -> subprocess.Popen:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(OWNED_PREFIXES)}
    # The code under test, not whatever checkout the venv's editable install points at.
    keep["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), keep.get("PYTHONPATH")) if p)
    return subprocess.Popen(
        [sys.executable, "-m", "bots.cli", "local"],
        cwd=workdir, env={**keep, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_for_line(process: subprocess.Popen, prefix: str, lines: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.startswith(prefix):
            return
    raise AssertionError(f"no line starting with {prefix!r}; got:\n" + "\n".join(lines))


def test_the_local_bot_hears_answers_and_ends_on_silence(audio, llm, tmp_path):
    env = {
        **audio.env,
        "OPENAI_BASE_URL": llm.base_url,
        "VOICEBOT_GREETING": GREETING,
        "VOICEBOT_SILENCE_TIMEOUT_SECS": "3",
        "VOICEBOT_SILENCE_PROMPTS": "0",
        "VOICEBOT_LOG_LEVEL": "WARNING",
    }
    bot = start_local_bot(env, tmp_path)
    lines: list[str] = []
    try:
        wait_for_line(bot, f"Bot: {GREETING}", lines, timeout=60)
        wait_for_line(bot, "[listening]", lines, timeout=30)  # the greeting has played
        audio.say(speech_pcm16(QUESTION))
        wait_for_line(bot, "Session ended:", lines, timeout=60)
        assert bot.wait(timeout=30) == 0
    finally:
        if bot.poll() is None:
            bot.kill()
    heard = " ".join(line.removeprefix("You: ") for line in lines if line.startswith("You: "))
    assert word_error_rate(QUESTION, heard) <= 0.25, lines
    assert f"Bot: {REPLY}" in lines
    assert {"[speaking]", "[listening]"} <= set(lines)
    assert lines[-1] == "Session ended: silence_timeout"
    assert audio.speaker_seconds_of_sound() > 2.0, "the greeting, reply and goodbye came out of the speaker"
    assert "Traceback" not in bot.stderr.read()


def test_ctrl_c_says_goodbye_and_exits_cleanly(audio, llm, tmp_path):
    env = {**audio.env, "OPENAI_BASE_URL": llm.base_url, "VOICEBOT_GREETING": GREETING,
           "VOICEBOT_GOODBYE": "Goodbye for now!", "VOICEBOT_LOG_LEVEL": "WARNING"}  # fmt: skip
    bot = start_local_bot(env, tmp_path)
    lines: list[str] = []
    try:
        wait_for_line(bot, f"Bot: {GREETING}", lines, timeout=60)
        bot.send_signal(signal.SIGINT)
        wait_for_line(bot, "Session ended:", lines, timeout=30)
        assert bot.wait(timeout=30) == 0
    finally:
        if bot.poll() is None:
            bot.kill()
    assert "Bot: Goodbye for now!" in lines
    assert lines[-1] == "Session ended: console_stop"
    stderr = bot.stderr.read()
    assert "Traceback" not in stderr and "CancelledError" not in stderr, stderr


def test_no_audio_device_is_one_clear_line_and_a_nonzero_exit(tmp_path):
    env = {"PULSE_SERVER": f"unix:{tmp_path}/nothing-here"}
    bot = start_local_bot(env, tmp_path)
    try:
        assert bot.wait(timeout=60) == 2
    finally:
        if bot.poll() is None:
            bot.kill()
    errors = [line for line in bot.stderr.read().splitlines() if line.startswith("voicebot local:")]
    assert len(errors) == 1 and "cannot open" in errors[0] and "--list-devices" in errors[0]
