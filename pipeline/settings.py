"""One typed settings object for the whole server, read from the environment and `.env`.

Pipecat silently ignores parameters it does not know; we do the opposite. Every knob is
validated once at start-up, and a bad value or a misspelt variable name stops the server
with one line that names the variable, instead of a bot that quietly runs with defaults.
"""

from __future__ import annotations

import difflib
import os
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Literal

from dotenv import dotenv_values
from pydantic import AliasChoices, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SpeechProvider = Literal["auto", "deepgram", "openai", "local"]  # for STT and TTS alike
LLMProvider = Literal["auto", "openai", "local"]

DEFAULT_SYSTEM_PROMPT = (
    "You are a friendly voice assistant talking to a person over the phone or in a browser. "
    "Answer in one or two short sentences of plain speech: no lists, no markdown, no emoji, "
    "because everything you write is spoken aloud."
)

# Prefixes of the variables we own. A name with one of these prefixes that is not a setting
# is reported when it is close to a real one (a typo), and always for the VOICEBOT_ prefix.
OWNED_PREFIXES = (
    "VOICEBOT_", "STT_", "LLM_", "TTS_", "BOT_", "VAD_", "DEEPGRAM_", "OPENAI_", "LOCAL_LLM_", "TWILIO_",
)  # fmt: skip


# Names of settings before every name of ours started with VOICEBOT_: still read, with a warning.
RENAMED = {
    "STT_PROVIDER": "VOICEBOT_STT_PROVIDER",
    "LLM_PROVIDER": "VOICEBOT_LLM_PROVIDER",
    "TTS_PROVIDER": "VOICEBOT_TTS_PROVIDER",
    "LOCAL_LLM_MODEL": "VOICEBOT_LOCAL_LLM_MODEL",
    "LOCAL_LLM_CONTEXT": "VOICEBOT_LOCAL_LLM_CONTEXT",
    "LOCAL_LLM_THREADS": "VOICEBOT_LOCAL_LLM_THREADS",
    "LOCAL_LLM_MAX_TOKENS": "VOICEBOT_LOCAL_LLM_MAX_TOKENS",
    "BOT_SYSTEM_PROMPT": "VOICEBOT_SYSTEM_PROMPT",
    "BOT_GREETING": "VOICEBOT_GREETING",
    "VAD_STOP_SECS": "VOICEBOT_VAD_STOP_SECS",
    "LLM_STALL_SECS": "VOICEBOT_LLM_STALL_SECS",
    "BOT_APOLOGY": "VOICEBOT_APOLOGY",
}
OLD_NAMES = {new: old for old, new in RENAMED.items()}


def renamed(name: str) -> str | AliasChoices:
    """The environment name of a setting, and its old name if it had one (still accepted)."""
    return AliasChoices(name, OLD_NAMES[name]) if name in OLD_NAMES else name


class SettingsError(ValueError):
    """A setting is invalid; the message is one line per problem, naming the variable."""


class Settings(BaseSettings):
    """Every knob of the server. Field aliases are the environment variable names."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="forbid",
        # Only the names above are read: with field names too, `PORT`, `HOST` or `GOODBYE` set
        # for something else in the environment would quietly configure the server.
        populate_by_name=False,
        case_sensitive=False,
    )

    @classmethod
    def from_fields(cls, **values) -> Settings:
        """Settings given by field name (tests, tools); the environment still fills the rest."""
        return cls(**{_env_name(cls.model_fields[name]): value for name, value in values.items()})

    # Server
    host: str = Field("127.0.0.1", validation_alias="VOICEBOT_HOST")
    port: int = Field(8000, ge=1, le=65535, validation_alias="VOICEBOT_PORT")
    log_level: Literal["TRACE", "DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", validation_alias="VOICEBOT_LOG_LEVEL"
    )

    # Service selection
    stt_provider: SpeechProvider = Field("auto", validation_alias=renamed("VOICEBOT_STT_PROVIDER"))
    llm_provider: LLMProvider = Field("auto", validation_alias=renamed("VOICEBOT_LLM_PROVIDER"))
    tts_provider: SpeechProvider = Field("auto", validation_alias=renamed("VOICEBOT_TTS_PROVIDER"))

    # Deepgram
    deepgram_api_key: SecretStr | None = Field(None, validation_alias="DEEPGRAM_API_KEY")
    deepgram_base_url: str = Field("", validation_alias="DEEPGRAM_BASE_URL")
    deepgram_stt_model: str = Field("nova-3-general", validation_alias="DEEPGRAM_STT_MODEL")
    deepgram_tts_voice: str = Field("aura-2-helena-en", validation_alias="DEEPGRAM_TTS_VOICE")

    # OpenAI (or any OpenAI-compatible server through OPENAI_BASE_URL)
    openai_api_key: SecretStr | None = Field(None, validation_alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(None, validation_alias="OPENAI_BASE_URL")
    openai_model: str = Field("gpt-4.1-mini", validation_alias="OPENAI_MODEL")
    openai_tts_voice: str = Field("alloy", validation_alias="OPENAI_TTS_VOICE")
    openai_tts_model: str = Field("gpt-4o-mini-tts", validation_alias="OPENAI_TTS_MODEL")
    openai_stt_model: str = Field("gpt-4o-transcribe", validation_alias="OPENAI_STT_MODEL")

    # Capacity and shutdown
    # None: the measured capacity of the stack in use (see pipeline.services.default_max_sessions)
    max_sessions: int | None = Field(None, ge=1, le=10000, validation_alias="VOICEBOT_MAX_SESSIONS")
    max_sessions_per_client: int = Field(
        3, ge=0, le=10000, validation_alias="VOICEBOT_MAX_SESSIONS_PER_CLIENT"
    )
    new_sessions_per_client_per_minute: int = Field(
        10, ge=0, le=100000, validation_alias="VOICEBOT_NEW_SESSIONS_PER_CLIENT_PER_MINUTE"
    )
    trusted_proxies: str = Field("", validation_alias="VOICEBOT_TRUSTED_PROXIES")
    drain_secs: float = Field(30.0, ge=0.0, le=3600.0, validation_alias="VOICEBOT_DRAIN_SECS")
    max_message_bytes: int = Field(
        16 * 2**20, ge=64 * 1024, le=256 * 2**20, validation_alias="VOICEBOT_MAX_MESSAGE_BYTES"
    )

    # Access (see README: open on loopback, keys or session tokens required on a public interface)
    api_keys: str = Field("", validation_alias="VOICEBOT_API_KEYS")
    allowed_origins: str = Field("", validation_alias="VOICEBOT_ALLOWED_ORIGINS")
    session_secret: SecretStr | None = Field(None, validation_alias="VOICEBOT_SESSION_SECRET")
    session_token_secs: int = Field(300, ge=10, le=86400, validation_alias="VOICEBOT_SESSION_TOKEN_SECS")
    anonymous_page_tokens: bool = Field(False, validation_alias="VOICEBOT_ANONYMOUS_PAGE_TOKENS")
    log_format: Literal["text", "json"] = Field("text", validation_alias="VOICEBOT_LOG_FORMAT")
    transcript_log_dir: Path | None = Field(None, validation_alias="VOICEBOT_TRANSCRIPT_LOG_DIR")

    # Twilio (phone calls)
    public_url: str | None = Field(None, validation_alias="VOICEBOT_PUBLIC_URL")
    twilio_account_sid: str | None = Field(None, validation_alias="TWILIO_ACCOUNT_SID")
    twilio_auth_token: SecretStr | None = Field(None, validation_alias="TWILIO_AUTH_TOKEN")
    twilio_api_base_url: str = Field("https://api.twilio.com", validation_alias="TWILIO_API_BASE_URL")

    # Embedded offline stack
    local_llm_model: Path | None = Field(None, validation_alias=renamed("VOICEBOT_LOCAL_LLM_MODEL"))
    local_llm_context: int = Field(
        2048, ge=512, le=32768, validation_alias=renamed("VOICEBOT_LOCAL_LLM_CONTEXT")
    )
    local_llm_threads: int = Field(1, ge=1, le=64, validation_alias=renamed("VOICEBOT_LOCAL_LLM_THREADS"))
    local_llm_max_tokens: int = Field(
        60, ge=8, le=4096, validation_alias=renamed("VOICEBOT_LOCAL_LLM_MAX_TOKENS")
    )

    # The bot
    bot_system_prompt: str = Field(DEFAULT_SYSTEM_PROMPT, validation_alias=renamed("VOICEBOT_SYSTEM_PROMPT"))
    bot_greeting: str = Field(
        "Hello! How can I help you today?", validation_alias=renamed("VOICEBOT_GREETING")
    )
    vad_stop_secs: float = Field(0.2, gt=0.0, le=5.0, validation_alias=renamed("VOICEBOT_VAD_STOP_SECS"))
    # Start the reply at the VAD's stop on the interim transcript; heard only if the turn confirms it.
    speculative_replies: bool = Field(True, validation_alias="VOICEBOT_SPECULATIVE_REPLIES")
    llm_stall_secs: float = Field(8.0, gt=0.0, le=300.0, validation_alias=renamed("VOICEBOT_LLM_STALL_SECS"))
    bot_apology: str = Field(
        "Sorry, I'm having trouble answering right now. Could you say that again?",
        min_length=1,
        validation_alias=renamed("VOICEBOT_APOLOGY"),
    )

    # Ending sessions (0 turns a timeout off)
    idle_timeout_secs: float = Field(30.0, ge=0.0, le=86400.0, validation_alias="VOICEBOT_IDLE_TIMEOUT_SECS")
    silence_timeout_secs: float = Field(
        20.0, ge=0.0, le=86400.0, validation_alias="VOICEBOT_SILENCE_TIMEOUT_SECS"
    )
    silence_prompt: str = Field(
        "Are you still there?", min_length=1, validation_alias="VOICEBOT_SILENCE_PROMPT"
    )
    silence_prompts: int = Field(1, ge=0, le=10, validation_alias="VOICEBOT_SILENCE_PROMPTS")
    goodbye: str = Field("Thanks for talking with me. Goodbye!", validation_alias="VOICEBOT_GOODBYE")
    max_session_secs: float = Field(0.0, ge=0.0, le=86400.0, validation_alias="VOICEBOT_MAX_SESSION_SECS")
    end_on_goodbye: bool = Field(True, validation_alias="VOICEBOT_END_ON_GOODBYE")

    # Bots (see pipeline.profiles): several profiles in one file, and the language spoken
    profiles: Path | None = Field(None, validation_alias="VOICEBOT_PROFILES")
    language: str = Field(
        "en", pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$", validation_alias="VOICEBOT_LANGUAGE"
    )

    @model_validator(mode="after")
    def _explicit_providers_have_credentials(self) -> Settings:
        """An explicitly chosen cloud service without its key would fail on the first call; fail now."""
        speech_keys = {"deepgram": "DEEPGRAM_API_KEY", "openai": "OPENAI_API_KEY"}
        needs = {
            "VOICEBOT_STT_PROVIDER": (self.stt_provider, speech_keys),
            "VOICEBOT_TTS_PROVIDER": (self.tts_provider, speech_keys),
        }
        keys = {"DEEPGRAM_API_KEY": self.deepgram_api_key, "OPENAI_API_KEY": self.openai_api_key}
        for variable, (choice, required) in needs.items():
            key_name = required.get(choice)
            if key_name and not keys[key_name]:
                raise ValueError(f"{variable}={choice} needs {key_name}")
        if self.llm_provider == "openai" and not (self.openai_api_key or self.openai_base_url):
            raise ValueError("VOICEBOT_LLM_PROVIDER=openai needs OPENAI_API_KEY or OPENAI_BASE_URL")
        if self.public_url is not None and not self.public_url.startswith(("http://", "https://")):
            raise ValueError(f"VOICEBOT_PUBLIC_URL={self.public_url} must start with http:// or https://")
        try:
            trusted_networks(self.trusted_proxies)
        except ValueError as e:
            raise ValueError(f"VOICEBOT_TRUSTED_PROXIES={self.trusted_proxies}: {e}") from e
        if self.local_llm_model is not None and not self.local_llm_model.is_file():
            raise ValueError(f"VOICEBOT_LOCAL_LLM_MODEL={self.local_llm_model} is not a file")
        return self


def trusted_networks(spec: str) -> list[IPv4Network | IPv6Network]:
    """The proxies whose X-Forwarded-For we believe: comma-separated addresses or CIDRs."""
    return [ip_network(part.strip(), strict=False) for part in spec.split(",") if part.strip()]


def _env_name(field) -> str:
    alias = field.validation_alias
    return str(alias.choices[0] if isinstance(alias, AliasChoices) else alias)


def _setting_names() -> list[str]:
    """Every environment name the settings read: the current ones, then the old ones."""
    return [_env_name(field) for field in Settings.model_fields.values()] + list(RENAMED)


def deprecated_names(environ: dict[str, str], env_file: str | Path | None = ".env") -> list[str]:
    """One line per old setting name in use (environment or `.env`), naming its new name."""
    in_file = dotenv_values(env_file) if env_file and Path(env_file).is_file() else {}
    used = {name.upper() for name in (*environ, *in_file)}
    return [
        f"{old} is deprecated: use {new} (the old name still works for now)"
        for old, new in RENAMED.items()
        if old in used
    ]


def _misspelt_variables(environ: dict[str, str]) -> list[str]:
    """Names in the environment that look like one of our settings but are not one."""
    known = set(_setting_names())
    problems = []
    for name in environ:
        upper = name.upper()
        if upper in known or not upper.startswith(OWNED_PREFIXES):
            continue
        close = difflib.get_close_matches(upper, known, n=1, cutoff=0.8)
        if close:
            problems.append(f"unknown setting {name} (did you mean {close[0]}?)")
        elif upper.startswith("VOICEBOT_"):
            problems.append(f"unknown setting {name}")
    return problems


def _describe(error: dict) -> str:
    location = ".".join(str(part) for part in error.get("loc", ()) if part != "__root__")
    message = error.get("msg", "invalid").removeprefix("Value error, ")
    if not location:
        return message
    value = error.get("input")
    shown = "" if isinstance(value, dict) or value is None else f"={value!r}"
    if error.get("type") == "extra_forbidden":
        return f"unknown setting {location.upper()} in .env"
    return f"{location.upper()}{shown}: {message}"


def load_settings(env_file: str | Path | None = ".env") -> Settings:
    """Read and validate the settings, or raise SettingsError with one line per problem."""
    problems = _misspelt_variables(dict(os.environ))
    settings = None
    try:
        settings = Settings(_env_file=env_file)  # type: ignore[call-arg]
    except ValidationError as exc:
        problems.extend(_describe(error) for error in exc.errors())
    if problems or settings is None:
        raise SettingsError("; ".join(f"invalid configuration: {p}" for p in problems))
    return settings
