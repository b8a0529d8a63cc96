"""End-to-end fixtures: the real server on the embedded offline stack."""

from __future__ import annotations

import pytest

from processors.moonshine_stt import MoonshineTranscriber
from tests.fakes.deepgram_server import FakeDeepgramServer
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.twilio import FakeTwilioAPI
from tests.support.server import ServerProcess


@pytest.fixture(scope="module")
def offline_server():
    """One real `voicebot serve` on the offline stack for a test module (models load once)."""
    server = ServerProcess(env={"VOICEBOT_GREETING": "Hello! How can I help you today?"}).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def llm():
    """An OpenAI-compatible fake answering "Paris is the capital of France." (its default),
    one per test module, so a module that changes its behaviour affects only itself."""
    server = FakeOpenAIServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def twilio_api():
    """Twilio's REST API (the hang-up), one per test module; it records every hang-up."""
    api = FakeTwilioAPI().start()
    yield api
    api.stop()


@pytest.fixture(scope="module")
def fakes():
    """The cloud services at the network edge: a Deepgram fake that really transcribes (the
    offline model) and an OpenAI fake, one pair per test module."""
    deepgram = FakeDeepgramServer(MoonshineTranscriber()).start()
    openai = FakeOpenAIServer().start()
    yield deepgram, openai
    deepgram.stop()
    openai.stop()
