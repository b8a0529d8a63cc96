"""A local server speaking OpenAI's Chat Completions streaming protocol (SSE), for tests.

It runs on its own thread and event loop so synchronous and async tests can both use it, and
the real `openai` SDK inside Pipecat's `OpenAILLMService` talks to it unchanged. Chunks follow
the API reference: a role delta, content deltas, a chunk with `finish_reason`, a usage chunk
with empty `choices`, then `data: [DONE]`.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from dataclasses import dataclass, field

from aiohttp import web

from tests.support.server import free_port


@dataclass
class LLMBehaviour:
    """What the fake does with the next requests; tests change it between turns."""

    reply: str = "Paris is the capital of France."
    first_token_delay: float = 0.0
    token_interval: float = 0.01
    status: int = 200  # e.g. 401, 429, 500 to fail the request
    stall_after_tokens: int | None = None  # stop sending (keep the connection open) after N tokens
    drop_after_tokens: int | None = None  # cut the connection after N tokens


@dataclass
class FakeOpenAIServer:
    """`POST /v1/chat/completions` (streaming), `GET /v1/models`."""

    behaviour: LLMBehaviour = field(default_factory=LLMBehaviour)
    requests: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fake-openai", daemon=True)
        self._runner: web.AppRunner | None = None

    def start(self) -> FakeOpenAIServer:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    @staticmethod
    def _tokens(text: str) -> list[str]:
        words = text.split(" ")
        return [word if i == 0 else f" {word}" for i, word in enumerate(words)]

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        behaviour = self.behaviour
        if behaviour.status != 200:
            error = {"message": f"fake error {behaviour.status}", "type": "fake", "code": None}
            return web.json_response({"error": error}, status=behaviour.status)

        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)

        async def send(choices: list[dict], usage: dict | None = None) -> None:
            chunk = {
                "id": completion_id, "object": "chat.completion.chunk", "created": created,
                "model": body.get("model", "fake"), "system_fingerprint": "fp_fake",
                "choices": choices, "usage": usage,
            }  # fmt: skip
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

        def delta(content: dict, finish: str | None = None) -> list[dict]:
            return [{"index": 0, "delta": content, "logprobs": None, "finish_reason": finish}]

        await asyncio.sleep(behaviour.first_token_delay)
        await send(delta({"role": "assistant", "content": ""}))
        tokens = self._tokens(behaviour.reply)
        for sent, token in enumerate(tokens):
            if behaviour.stall_after_tokens is not None and sent >= behaviour.stall_after_tokens:
                await asyncio.sleep(3600)
            if behaviour.drop_after_tokens is not None and sent >= behaviour.drop_after_tokens:
                request.transport.close()
                return response
            await send(delta({"content": token}))
            await asyncio.sleep(behaviour.token_interval)
        await send(delta({}, "stop"))
        if body.get("stream_options", {}).get("include_usage"):
            prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(tokens),
                     "total_tokens": prompt_tokens + len(tokens)}  # fmt: skip
            await send([], usage)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response
