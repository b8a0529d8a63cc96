"""The OpenAI(-compatible) LLM, made to never leave the caller in dead air.

A 429, a 500, a dropped stream or a stall (no token for `stall_secs`) is retried once while
nothing has been spoken yet; if that fails too, the bot says a short apology and the session
goes on, so the next turn works. Bad credentials are left to Pipecat: they are permanent, and
the session ends with reason `error`.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable

from loguru import logger
from openai import AuthenticationError, PermissionDeniedError
from openai.types.chat import ChatCompletionChunk
from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice
from openai.types.chat.chat_completion_chunk import ChoiceDelta
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.services.openai.llm import OpenAILLMService

PERMANENT_ERRORS = (AuthenticationError, PermissionDeniedError)


class LLMStalled(Exception):
    """No token arrived within the stall timeout."""


class _StallGuardedStream:
    """Wraps an OpenAI chunk stream: each chunk must arrive within `stall_secs`."""

    def __init__(self, stream, stall_secs: float):
        self._stream = stream
        self._stall_secs = stall_secs
        self._chunks = None

    def __aiter__(self):
        self._chunks = self._stream.__aiter__()
        return self

    async def __anext__(self):
        try:
            # asyncio.timeout arms a timer handle; wait_for would start a task for every token.
            async with asyncio.timeout(self._stall_secs):
                return await self._chunks.__anext__()
        except TimeoutError as e:
            raise LLMStalled(f"no token for {self._stall_secs:g}s") from e

    async def aclose(self) -> None:
        if self._chunks is not None and hasattr(self._chunks, "aclose"):
            await self._chunks.aclose()

    async def close(self) -> None:
        await self._stream.close()


def _text_chunk(text: str) -> ChatCompletionChunk:
    """A streamed chunk carrying `text`, as the LLM would send it."""
    return ChatCompletionChunk(
        id="apology",
        object="chat.completion.chunk",
        created=0,
        model="",
        choices=[ChunkChoice(index=0, delta=ChoiceDelta(content=text), finish_reason="stop")],
    )


class _ResilientStream:
    """The reply's chunk stream: retried once while nothing was spoken, else ended with an apology.

    Pipecat reads the reply from this stream as from any completion, so the apology reaches the
    pipeline as the reply's text (spoken, shown, kept in the context) through Pipecat's own code.
    """

    def __init__(self, open_stream: Callable[[], Awaitable], apology: str):
        self._open = open_stream
        self._apology = apology
        self._stream = None
        self._chunks = None
        self._spoke = False
        self._retried = False
        self._done = False
        self.text = ""  # what the reply has said so far

    async def start(self) -> _ResilientStream:
        """Open the completion (retrying once); a failure to open leaves the apology to stream."""
        await self._open_or_fail()
        return self

    def __aiter__(self):
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        while not self._done:
            if self._chunks is None:  # opening failed for good
                return self._apologise()
            try:
                chunk = await self._chunks.__anext__()
            except StopAsyncIteration:
                self._done = True
                break
            except PERMANENT_ERRORS:
                raise
            except Exception as e:
                await self._fail(f"{type(e).__name__}: {e}")
                continue
            if chunk.choices and chunk.choices[0].delta and chunk.choices[0].delta.content:
                self._spoke = True
                self.text += chunk.choices[0].delta.content
            return chunk
        raise StopAsyncIteration

    async def _open_or_fail(self) -> None:
        try:
            self._stream = await self._open()
            self._chunks = self._stream.__aiter__()
        except PERMANENT_ERRORS:
            raise
        except Exception as e:
            self._stream = self._chunks = None
            await self._fail(f"{type(e).__name__}: {e}")

    async def _fail(self, failure: str) -> None:
        await self.close()
        if self._spoke or self._retried:
            logger.warning(f"LLM: {failure}; apologising to the user")
            self._chunks = None
            return
        logger.warning(f"LLM: {failure}; retrying once")
        self._retried = True
        await self._open_or_fail()

    def _apologise(self) -> ChatCompletionChunk:
        self._done = True
        # After a partial reply, start the apology as a new sentence.
        return _text_chunk(f" {self._apology}" if self._spoke else self._apology)

    async def aclose(self) -> None:
        await self.close()

    async def close(self) -> None:
        stream, self._stream, self._chunks = self._stream, None, None
        if stream is not None:
            await stream.aclose()
            await stream.close()


class ResilientOpenAILLMService(OpenAILLMService):
    """`OpenAILLMService` with stall detection, one retry before speaking, and an apology.

    Emits what `OpenAILLMService` emits; on failure the apology is streamed as the end of the
    reply, so Pipecat pushes it as the reply's `LLMTextFrame`: spoken, shown to the client and
    kept in the context.

    Example::

        llm = ResilientOpenAILLMService(api_key=key, stall_secs=8, apology="Sorry...", settings=...)
    """

    def __init__(self, *, stall_secs: float, apology: str, **kwargs):
        super().__init__(**kwargs)
        self._stall_secs = stall_secs
        self._apology = apology
        self._stream: _ResilientStream | None = None

    @property
    def reply_text(self) -> str:
        """What the response in progress has said so far (a tool handler reads it)."""
        return self._stream.text if self._stream is not None else ""

    def create_client(self, *args, **kwargs):
        # Our policy (one retry, only before anything was spoken) replaces the SDK's own two
        # silent retries, which would otherwise multiply it and hold the caller in dead air.
        return super().create_client(*args, **kwargs).with_options(max_retries=0)

    async def get_chat_completions(self, context: LLMContext) -> _ResilientStream:
        self._stream = _ResilientStream(functools.partial(self._open_completion, context), self._apology)
        return await self._stream.start()

    async def _open_completion(self, context: LLMContext) -> _StallGuardedStream:
        try:
            stream = await asyncio.wait_for(super().get_chat_completions(context), self._stall_secs)
        except TimeoutError as e:
            raise LLMStalled(f"no response for {self._stall_secs:g}s") from e
        return _StallGuardedStream(stream, self._stall_secs)
