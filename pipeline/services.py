"""Service selection: which STT, LLM and TTS a session uses, and building them.

`auto` picks the cloud service when its credentials are configured and the embedded offline
stack otherwise, so a fresh checkout with no keys still works end to end.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, NamedTuple

from pipeline.providers import Providers
from pipeline.settings import Settings

if TYPE_CHECKING:  # importing Pipecat prints its banner: `resolve_providers` runs before logging is set up
    from pipecat.services.llm_service import LLMService
    from pipecat.services.stt_service import STTService
    from pipecat.services.tts_service import TTSService

    from pipeline.resources import SharedResources


def describe_failed_service(service: object, providers: Providers) -> str:
    """Name a broken service and the settings to check, for one clear log line."""
    from pipecat.services.llm_service import LLMService
    from pipecat.services.stt_service import STTService
    from pipecat.services.tts_service import TTSService

    stage = next(
        (
            name
            for name, kind in (("stt", STTService), ("llm", LLMService), ("tts", TTSService))
            if isinstance(service, kind)
        ),
        None,
    )
    if stage is None:
        return f"{service}"
    provider = getattr(providers, stage)
    entry = SERVICES.get((stage, provider))
    hint = entry.settings_to_check if entry else None
    label = f"{provider} {stage.upper()} ({service})"
    return f"{label}; check {hint}" if hint else label


def resolve_providers(settings: Settings) -> Providers:
    """Turn each `auto` into a concrete provider from the configured credentials."""
    has_deepgram = settings.deepgram_api_key is not None
    has_openai = settings.openai_api_key is not None

    stt = settings.stt_provider
    if stt == "auto":
        stt = "deepgram" if has_deepgram else "local"
    llm = settings.llm_provider
    if llm == "auto":
        llm = "openai" if has_openai or settings.openai_base_url else "local"
    tts = settings.tts_provider
    if tts == "auto":
        tts = "deepgram" if has_deepgram else "openai" if has_openai else "local"
    return Providers(stt=stt, llm=llm, tts=tts)


class ServiceEntry(NamedTuple):
    """Where a stage's service class lives ("module:Class"), and what to check when it fails."""

    path: str
    settings_to_check: str | None = None


_DEEPGRAM = "DEEPGRAM_API_KEY (and DEEPGRAM_BASE_URL)"
_OPENAI = "OPENAI_API_KEY (and OPENAI_BASE_URL)"
_OPENAI_LLM = "OPENAI_API_KEY, OPENAI_BASE_URL and OPENAI_MODEL"
_LLM = "processors.resilient_llm:ResilientOpenAILLMService"

# Each stage's service, per provider. `service_class` imports it when a session is built
# (importing Pipecat prints its banner, and `resolve_providers` runs before logging is set up);
# start-up imports the chosen ones, so that they are loaded before it freezes its objects
# (pipeline/heap.py) and the first caller does not wait for the import.
SERVICES = {
    ("stt", "deepgram"): ServiceEntry("processors.deepgram_stt:ResilientDeepgramSTTService", _DEEPGRAM),
    ("stt", "openai"): ServiceEntry("pipecat.services.openai.stt:OpenAISTTService", _OPENAI),
    ("stt", "local"): ServiceEntry("processors.moonshine_stt:MoonshineSTTService"),
    ("llm", "openai"): ServiceEntry(_LLM, _OPENAI_LLM),
    ("llm", "local"): ServiceEntry(_LLM, "VOICEBOT_LOCAL_LLM_MODEL, or the local LLM server's log"),
    ("tts", "deepgram"): ServiceEntry(
        "processors.deepgram_tts:SentenceFlushingDeepgramTTSService", _DEEPGRAM
    ),
    ("tts", "openai"): ServiceEntry("pipecat.services.openai.tts:OpenAITTSService", _OPENAI),
    ("tts", "local"): ServiceEntry("processors.piper_tts:SharedPiperTTSService"),
}


def service_class(stage: str, provider: str) -> type:
    """The class a stage's service is built from for this provider (imported on first use)."""
    module, _, name = SERVICES[stage, provider].path.partition(":")
    return getattr(importlib.import_module(module), name)


def import_service_modules(providers: Providers) -> None:
    """Import the chosen services' modules now, at start-up, rather than when the first call comes."""
    for stage in ("stt", "llm", "tts"):
        service_class(stage, getattr(providers, stage))


def _secret(value) -> str:
    return value.get_secret_value() if value is not None else ""


def build_stt(providers: Providers, settings: Settings, resources: SharedResources) -> STTService:
    stt = service_class("stt", providers.stt)
    if providers.stt == "deepgram":
        return stt(
            api_key=_secret(settings.deepgram_api_key),
            base_url=settings.deepgram_base_url,
            settings=stt.Settings(model=settings.deepgram_stt_model, language=settings.language),
        )
    if providers.stt == "openai":
        return stt(
            api_key=_secret(settings.openai_api_key),
            base_url=settings.openai_base_url,
            settings=stt.Settings(model=settings.openai_stt_model, language=settings.language),
        )
    return stt(transcriber=resources.require_transcriber())


def build_llm(providers: Providers, settings: Settings, resources: SharedResources) -> LLMService:
    llm = service_class("llm", providers.llm)
    resilience = {"stall_secs": settings.llm_stall_secs, "apology": settings.bot_apology}
    if providers.llm == "local":
        return llm(
            **resilience,
            api_key="local",
            base_url=resources.require_local_llm_url(),
            settings=llm.Settings(
                model="local",
                system_instruction=settings.bot_system_prompt,
                max_tokens=settings.local_llm_max_tokens,
                temperature=0.2,
            ),
        )
    return llm(
        **resilience,
        api_key=_secret(settings.openai_api_key) or "none",
        base_url=settings.openai_base_url,
        settings=llm.Settings(model=settings.openai_model, system_instruction=settings.bot_system_prompt),
    )


def build_tts(providers: Providers, settings: Settings, resources: SharedResources) -> TTSService:
    tts = service_class("tts", providers.tts)
    if providers.tts == "deepgram":
        return tts(
            api_key=_secret(settings.deepgram_api_key),
            base_url=settings.deepgram_base_url or "wss://api.deepgram.com",
            settings=tts.Settings(voice=settings.deepgram_tts_voice),
        )
    if providers.tts == "openai":
        # OpenAI speech is 24 kHz PCM only; Pipecat resamples it to the transport's rate.
        return tts(
            api_key=_secret(settings.openai_api_key),
            base_url=settings.openai_base_url,
            sample_rate=24000,
            settings=tts.Settings(voice=settings.openai_tts_voice, model=settings.openai_tts_model),
        )
    return tts(voice=resources.require_piper_voice())
