"""The embedded LLM server's start-up warm-up, against an OpenAI-protocol fake at the network edge."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.local_llm import LocalLLMServer
from tests.fakes.openai_server import FakeOpenAIServer, LLMBehaviour

SYSTEM_PROMPT = "You are a terse test assistant."


@pytest.fixture
def llm():
    server = FakeOpenAIServer(LLMBehaviour(reply="Hi.")).start()
    yield server
    server.stop()


@pytest.fixture
async def local(llm):
    """Our server object pointed at the fake instead of a llama.cpp process it started."""
    local = LocalLLMServer(Path("unused.gguf"), threads=1, context=512)
    local.base_url = llm.base_url
    yield local
    await local.stop()


async def test_warm_up_evaluates_the_system_prompt_once(llm, local):
    """What the warm-up sends is what every session's first request starts with (the system
    prompt as the first message), so llama.cpp's prefix cache covers it; one token is enough."""
    await local.warm_up(SYSTEM_PROMPT)
    [request] = llm.requests
    assert request["messages"][0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert request["max_tokens"] == 1


async def test_a_failed_warm_up_does_not_stop_the_server(llm, local):
    llm.behaviour.status = 500
    await local.warm_up(SYSTEM_PROMPT)  # logs a warning; the first turn is just slower
