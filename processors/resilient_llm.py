"""The OpenAI(-compatible) LLM, made to never leave the caller in dead air.

A 429, a 500, a dropped stream or a stall (no token for `stall_secs`) is retried once while
nothing has been spoken yet; if that fails too, the bot says a short apology and the session
goes on, so the next turn works. Bad credentials are left to Pipecat: they are permanent, and
the session ends with reason `error`.
"""

from __future__ import annotations

import asyncio

from loguru import logger
from openai import AuthenticationError, PermissionDeniedError
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


class ResilientOpenAILLMService(OpenAILLMService):
    """`OpenAILLMService` with stall detection, one retry before speaking, and an apology.

    Emits what `OpenAILLMService` emits; on failure the apology is pushed as the reply's
    `LLMTextFrame`, so it is spoken, shown to the client and kept in the context.

    Example::

        llm = ResilientOpenAILLMService(api_key=key, stall_secs=8, apology="Sorry...", settings=...)
    """

    def __init__(self, *, stall_secs: float, apology: str, **kwargs):
        super().__init__(**kwargs)
        self._stall_secs = stall_secs
        self._apology = apology
        self._spoke = False
        self._reply: list[str] = []

    @property
    def reply_text(self) -> str:
        """What the response in progress has said so far (a tool handler reads it)."""
        return "".join(self._reply)

    def create_client(self, *args, **kwargs):
        # Our policy (one retry, only before anything was spoken) replaces the SDK's own two
        # silent retries, which would otherwise multiply it and hold the caller in dead air.
        return super().create_client(*args, **kwargs).with_options(max_retries=0)

    async def get_chat_completions(self, context: LLMContext):
        try:
            stream = await asyncio.wait_for(super().get_chat_completions(context), self._stall_secs)
        except TimeoutError as e:
            raise LLMStalled(f"no response for {self._stall_secs:g}s") from e
        return _StallGuardedStream(stream, self._stall_secs)

    async def _push_llm_text(self, text: str):
        self._spoke = True
        self._reply.append(text)
        await super()._push_llm_text(text)

    async def _process_context(self, context: LLMContext):
        failure = ""
        for attempt in (1, 2):
            self._spoke = False
            self._reply = []
            try:
                await super()._process_context(context)
                return
            except PERMANENT_ERRORS:
                raise
            except Exception as e:
                failure = f"{type(e).__name__}: {e}"
                if self._spoke or attempt == 2:
                    break
                logger.warning(f"{self}: {failure}; retrying once")
        logger.warning(f"{self}: {failure}; apologising to the user")
        await self.stop_ttfb_metrics()
        # After a partial reply, start the apology as a new sentence.
        await super()._push_llm_text(f" {self._apology}" if self._spoke else self._apology)
