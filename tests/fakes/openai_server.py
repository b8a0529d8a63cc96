"""A local server speaking OpenAI's Chat Completions streaming protocol (SSE), for tests.

It runs on its own thread and event loop so synchronous and async tests can both use it, and
the real `openai` SDK inside Pipecat's `OpenAILLMService` talks to it unchanged. Chunks follow
the API reference: a role delta, content deltas, a chunk with `finish_reason`, a usage chunk
with empty `choices`, then `data: [DONE]`.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from dataclasses import dataclass

import numpy as np
from aiohttp import web

from tests.fakes.background_loop import BackgroundServer


@dataclass
class LLMBehaviour:
    """What the fake does with the next requests; tests change it between turns."""

    reply: str = "Paris is the capital of France."
    first_token_delay: float = 0.0
    token_interval: float = 0.01
    status: int = 200  # e.g. 401, 429, 500 to fail the request
    stall_after_tokens: int | None = None  # go quiet (connection open) after N tokens...
    stall_secs: float = 30.0  # ...for this long
    drop_after_tokens: int | None = None  # cut the connection after N tokens
    # A tool call instead of `reply`, for requests whose last user message matches
    # `tool_call_when` (any request when None): `tool_reply` is said first (it may be empty),
    # then the call streams as `delta.tool_calls` pieces and the choice ends with "tool_calls".
    tool_call: str | None = None
    tool_arguments: str = "{}"
    tool_call_when: str | None = None
    tool_reply: str = ""
    echo_user: bool = False  # reply "You said: <the last user message>" instead of `reply`

    def calls_tool(self, body: dict) -> bool:
        if self.tool_call is None:
            return False
        if self.tool_call_when is None:
            return True
        return re.search(self.tool_call_when, last_user_message(body), re.IGNORECASE) is not None


def last_user_message(body: dict) -> str:
    """The content of a chat request's last user message ("" if none)."""
    users = [m for m in body.get("messages", []) if m.get("role") == "user"]
    return str(users[-1].get("content", "")) if users else ""


class FakeOpenAIServer(BackgroundServer):
    """`POST /v1/chat/completions` (streaming), `POST /v1/audio/speech` (PCM), `GET /v1/models`."""

    def __init__(self, behaviour: LLMBehaviour | None = None):
        super().__init__()
        self.behaviour = behaviour or LLMBehaviour()
        self.requests: list[dict] = []
        self.requests_at: list[float] = []  # time.monotonic() at each request's arrival
        self.completed: list[int] = []  # indexes in `requests` of the responses streamed to [DONE]
        self.completed_at: dict[int, float] = {}  # time.monotonic() at each of those [DONE]s
        self.speech_requests: list[dict] = []
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    async def serve(self):
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_post("/v1/audio/speech", self._speech)
        app.router.add_get("/v1/models", self._models)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port, shutdown_timeout=0.5).start()
        return runner.cleanup

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        """OpenAI TTS with `response_format=pcm`: 24 kHz 16-bit mono, streamed."""
        body = await request.json()
        self.speech_requests.append(body)
        response = web.StreamResponse(headers={"Content-Type": "audio/pcm"})
        await response.prepare(request)
        await response.write(tone_pcm16(seconds=0.06 * len(body.get("input", "")), sample_rate=24000))
        await response.write_eof()
        return response

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    @staticmethod
    def _tokens(text: str) -> list[str]:
        words = text.split(" ")
        return [word if i == 0 else f" {word}" for i, word in enumerate(words)]

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._stream_completion(request)
        except ConnectionResetError:  # the client cancelled the request (an interruption)
            return web.Response(status=499)

    async def _stream_completion(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        index = len(self.requests)
        self.requests.append(body)
        self.requests_at.append(time.monotonic())
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
        calls_tool = behaviour.calls_tool(body)
        text = behaviour.tool_reply if calls_tool else behaviour.reply
        if behaviour.echo_user and not calls_tool:
            text = f"You said: {last_user_message(body)}"
        tokens = self._tokens(text) if text else []
        for sent, token in enumerate(tokens):
            if behaviour.stall_after_tokens is not None and sent >= behaviour.stall_after_tokens:
                await asyncio.sleep(behaviour.stall_secs)
            if behaviour.drop_after_tokens is not None and sent >= behaviour.drop_after_tokens:
                request.transport.close()
                return response
            await send(delta({"content": token}))
            await asyncio.sleep(behaviour.token_interval)
        if calls_tool:
            await self._stream_tool_call(send, delta, behaviour)
        else:
            await send(delta({}, "stop"))
        if body.get("stream_options", {}).get("include_usage"):
            prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(tokens),
                     "total_tokens": prompt_tokens + len(tokens)}  # fmt: skip
            await send([], usage)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        self.completed_at[index] = time.monotonic()
        self.completed.append(index)
        return response

    @staticmethod
    async def _stream_tool_call(send, delta, behaviour: LLMBehaviour) -> None:
        """As the API streams a call: id, type and name first with empty arguments, then the
        arguments in pieces (only `index` and `function.arguments`), then "tool_calls"."""
        call_id = f"call_{uuid.uuid4().hex[:24]}"
        function = {"name": behaviour.tool_call, "arguments": ""}
        await send(
            delta({"tool_calls": [{"index": 0, "id": call_id, "type": "function", "function": function}]})
        )
        arguments = behaviour.tool_arguments
        for start in range(0, len(arguments), 4):
            piece = {"index": 0, "function": {"arguments": arguments[start : start + 4]}}
            await send(delta({"tool_calls": [piece]}))
            await asyncio.sleep(behaviour.token_interval)
        await send(delta({}, "tool_calls"))


def tone_pcm16(seconds: float, sample_rate: int, frequency: float = 220.0) -> bytes:
    """A quiet sine tone: stands in for synthesised speech in the TTS fakes."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (np.sin(2 * np.pi * frequency * t) * 6000).astype(np.int16).tobytes()
