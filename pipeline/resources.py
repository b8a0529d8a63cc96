"""What a process loads once and every session shares: the offline models and the local LLM.

Loading happens at start-up (`SharedResources.load`), never on a caller's first turn, and only
for the stages that actually run offline.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from loguru import logger

from pipeline.heap import freeze_start_up_objects
from pipeline.local_llm import LocalLLMServer, bundled_model_path
from pipeline.native_threads import limit_blas_threads
from pipeline.services import import_service_modules

if TYPE_CHECKING:
    from pipeline.providers import Providers
    from pipeline.settings import Settings
    from processors.moonshine_stt import MoonshineTranscriber
    from processors.piper_tts import SharedPiperVoice


class OfflineStackMissing(RuntimeError):
    """A stage is set to run offline but the `offline` extra is not installed."""


@dataclass
class SharedResources:
    """Per-process models and servers, handed to every session's service builders."""

    transcriber: MoonshineTranscriber | None = None
    piper_voice: SharedPiperVoice | None = None
    local_llm: LocalLLMServer | None = None
    local_llm_url: str = ""
    load_seconds: dict[str, float] = field(default_factory=dict)

    @classmethod
    async def load(cls, providers: Providers, settings: Settings) -> SharedResources:
        """Load what the chosen providers need; the heavy work runs off the event loop."""
        resources = cls()
        limit_blas_threads()
        try:
            await resources._timed("vad+turn", _preload_turn_models)
            if providers.stt == "local":
                resources.transcriber = await resources._timed("stt", _load_transcriber)
            if providers.tts == "local":
                resources.piper_voice = await resources._timed("tts", _load_piper_voice)
            if providers.llm == "local":
                model = settings.local_llm_model or bundled_model_path()
                resources.local_llm = LocalLLMServer(
                    model, threads=settings.local_llm_threads, context=settings.local_llm_context
                )
                started = time.monotonic()
                resources.local_llm_url = await resources.local_llm.start()
                await resources.local_llm.warm_up(settings.bot_system_prompt)
                resources.load_seconds["llm"] = time.monotonic() - started
        except BaseException:
            await resources.close()
            raise
        import_service_modules(providers)
        freeze_start_up_objects()
        return resources

    async def _timed(self, name: str, loader):
        started = time.monotonic()
        value = await asyncio.to_thread(loader)
        self.load_seconds[name] = time.monotonic() - started
        logger.info(f"{name.upper()} model(s) loaded in {self.load_seconds[name]:.2f}s")
        return value

    def require_transcriber(self) -> MoonshineTranscriber:
        if self.transcriber is None:
            raise OfflineStackMissing("the offline STT model was not loaded at start-up")
        return self.transcriber

    def require_piper_voice(self) -> SharedPiperVoice:
        if self.piper_voice is None:
            raise OfflineStackMissing("the offline TTS voice was not loaded at start-up")
        return self.piper_voice

    def require_local_llm_url(self) -> str:
        if not self.local_llm_url:
            raise OfflineStackMissing("the local LLM server was not started")
        return self.local_llm_url

    async def close(self) -> None:
        if self.local_llm is not None:
            await self.local_llm.stop()
            self.local_llm = None
        if self.transcriber is not None:
            self.transcriber.close()
            self.transcriber = None


def _offline_import_error(exc: ImportError) -> OfflineStackMissing:
    return OfflineStackMissing(
        f"the embedded offline stack is not installed ({exc.name}); run `make setup` or "
        "pip install 'voicebot[offline]', or configure cloud services (see README)"
    )


def _preload_turn_models() -> None:
    from processors.shared_models import preload

    preload()


def _load_transcriber() -> MoonshineTranscriber:
    try:
        from processors.moonshine_stt import MoonshineTranscriber

        transcriber = MoonshineTranscriber()
    except ImportError as exc:
        raise _offline_import_error(exc) from exc
    transcriber.warm_up()
    return transcriber


def _load_piper_voice() -> SharedPiperVoice:
    try:
        from processors.piper_tts import SharedPiperVoice

        voice = SharedPiperVoice.bundled()
    except ImportError as exc:
        raise _offline_import_error(exc) from exc
    voice.warm_up()
    return voice
