"""Service selection: `auto` follows the configured credentials, explicit choices are honoured."""

from __future__ import annotations

import pytest

from pipeline.services import SERVICES, describe_failed_service, resolve_providers, service_class
from pipeline.settings import load_settings


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, ("local", "local", "local")),
        ({"DEEPGRAM_API_KEY": "dg"}, ("deepgram", "local", "deepgram")),
        ({"OPENAI_API_KEY": "sk"}, ("local", "openai", "openai")),
        ({"DEEPGRAM_API_KEY": "dg", "OPENAI_API_KEY": "sk"}, ("deepgram", "openai", "deepgram")),
        ({"OPENAI_BASE_URL": "http://127.0.0.1:11434/v1"}, ("local", "openai", "local")),
        (
            {"DEEPGRAM_API_KEY": "dg", "VOICEBOT_STT_PROVIDER": "local", "VOICEBOT_TTS_PROVIDER": "local"},
            ("local",) * 3,
        ),
        ({"OPENAI_API_KEY": "sk", "VOICEBOT_LLM_PROVIDER": "local"}, ("local", "local", "openai")),
        ({"DEEPGRAM_API_KEY": "dg", "OPENAI_API_KEY": "sk", "VOICEBOT_TTS_PROVIDER": "openai"},
         ("deepgram", "openai", "openai")),
    ],
)  # fmt: skip
def test_auto_resolution(clean_env, env, expected):
    for name, value in env.items():
        clean_env.setenv(name, value)
    providers = resolve_providers(load_settings())
    assert (providers.stt, providers.llm, providers.tts) == expected
    assert providers.needs_offline_stack == ("local" in expected)


@pytest.mark.parametrize("stage, provider", sorted(SERVICES))
def test_every_provider_names_a_service_of_its_stage(stage, provider):
    """A misspelt entry would only fail when a caller first reaches that provider."""
    from pipecat.services.llm_service import LLMService
    from pipecat.services.stt_service import STTService
    from pipecat.services.tts_service import TTSService

    base = {"stt": STTService, "llm": LLMService, "tts": TTSService}[stage]
    assert issubclass(service_class(stage, provider), base)


def test_a_failed_service_is_named_with_the_settings_to_check(clean_env):
    from pipeline.providers import Providers

    providers = Providers(stt="deepgram", llm="local", tts="local")
    stt = service_class("stt", "deepgram")(api_key="key")
    described = describe_failed_service(stt, providers)
    assert described.startswith("deepgram STT (") and described.endswith(
        "check DEEPGRAM_API_KEY (and DEEPGRAM_BASE_URL)"
    )
