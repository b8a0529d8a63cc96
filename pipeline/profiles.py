"""Bot profiles: several differently configured bots on one server, chosen per session.

A TOML file named by VOICEBOT_PROFILES holds one table per bot (`[bots.NAME]`); what a profile
leaves unset comes from the environment settings, and with no file the environment is the one
profile, named `default`. The file is validated once at start-up, like the settings: an unknown
key, a bad value, or a profile the server's services cannot run stops the server with one line
naming the file, the profile and the key. Each bot resolves to a `Bot`: its name and a copy of
the settings with its values in place, so a session reads one settings object as before.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.providers import Providers
from pipeline.settings import Settings

DEFAULT_BOT = "default"  # the environment's own profile when there is no file
# Bot names reach URLs, tokens, logs and metric labels: short, plain, never a path.
BOT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
PHONE_NUMBER = re.compile(r"\+[1-9][0-9]{1,14}")  # E.164, as Twilio sends `To`

# Profile key -> the settings attribute it overrides (llm_model and tts_voice depend on the
# provider, see `_overrides`).
_SETTING_OF_KEY = {
    "system_prompt": "bot_system_prompt",
    "greeting": "bot_greeting",
    "goodbye": "goodbye",
    "idle_timeout_secs": "idle_timeout_secs",
    "silence_timeout_secs": "silence_timeout_secs",
    "max_session_secs": "max_session_secs",
    "language": "language",
    "end_on_goodbye": "end_on_goodbye",
}


class ProfilesError(ValueError):
    """The profiles file is unusable; the message is one line naming file, profile and key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class SilencePrompt(_Strict):
    """One "are you still there?": said after `after_secs` of silence (counted from the last
    prompt, or from when the user could have spoken); any user speech starts the list again."""

    after_secs: float = Field(gt=0.0, le=86400.0)
    say: str = Field(min_length=1, max_length=1000)


class Profile(_Strict):
    """One `[bots.NAME]` table. Unset keys fall back to the environment settings."""

    system_prompt: str | None = Field(None, min_length=1, max_length=20000)
    greeting: str | None = Field(None, max_length=1000)
    goodbye: str | None = Field(None, max_length=1000)
    silence_prompts: list[SilencePrompt] | None = Field(None, max_length=10)
    idle_timeout_secs: float | None = Field(None, ge=0.0, le=86400.0)
    silence_timeout_secs: float | None = Field(None, ge=0.0, le=86400.0)
    max_session_secs: float | None = Field(None, ge=0.0, le=86400.0)
    llm_model: str | None = Field(None, min_length=1, max_length=200)
    tts_voice: str | None = Field(None, min_length=1, max_length=200)
    language: str | None = Field(None, pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")
    end_on_goodbye: bool | None = None


class TwilioNumbers(_Strict):
    """`[twilio]`: which bot answers a call, by the number called (`To`)."""

    default: str | None = None
    numbers: dict[str, str] = Field(default_factory=dict)


class ProfilesFile(_Strict):
    default: str | None = None
    bots: dict[str, Profile] = Field(min_length=1, max_length=100)
    twilio: TwilioNumbers = Field(default_factory=TwilioNumbers)


@dataclass(frozen=True)
class Bot:
    """A profile resolved against the environment: everything a session of this bot runs with."""

    name: str
    settings: Settings
    silence_prompts: tuple[SilencePrompt, ...]

    @classmethod
    def from_settings(cls, settings: Settings, name: str = DEFAULT_BOT) -> Bot:
        """The environment as a bot: VOICEBOT_SILENCE_PROMPTS times VOICEBOT_SILENCE_PROMPT,
        each after VOICEBOT_SILENCE_TIMEOUT_SECS (a timeout of 0 turns the whole clock off, so
        the wait is then never used)."""
        prompt = SilencePrompt(after_secs=settings.silence_timeout_secs or 1.0, say=settings.silence_prompt)
        return cls(name, settings, (prompt,) * settings.silence_prompts)


class BotProfiles:
    """The server's bots by name, its default, and Twilio's number map.

    Example::

        bots = load_profiles(settings, providers)
        bot = bots.get(websocket.query_params.get("bot"))   # None: unknown name, refuse
    """

    def __init__(self, bots: dict[str, Bot], default: str, numbers: dict[str, str] | None = None,
                 phone_default: str | None = None):  # fmt: skip
        self._bots = bots
        self.default = default
        self._numbers = numbers or {}
        self._phone_default = phone_default or default

    @property
    def names(self) -> list[str]:
        return list(self._bots)

    def get(self, name: str | None) -> Bot | None:
        """The bot called `name` (the default for None or ""); None for any other name."""
        if not name:
            return self._bots[self.default]
        return self._bots.get(name) if isinstance(name, str) else None

    def for_number(self, called: str) -> Bot:
        """The bot that answers calls to `called` (Twilio's `To`)."""
        return self._bots[self._numbers.get(called, self._phone_default)]


def load_profiles(settings: Settings, providers: Providers) -> BotProfiles:
    """The bots of VOICEBOT_PROFILES, or the environment's one bot; raises ProfilesError."""
    path = settings.profiles
    if path is None:
        try:
            bot = _resolve(DEFAULT_BOT, Profile(), settings, providers)
        except ValueError as e:
            raise ProfilesError(
                f"invalid configuration: {e}".replace("language=", "VOICEBOT_LANGUAGE=")
            ) from None
        return BotProfiles({DEFAULT_BOT: bot}, DEFAULT_BOT)
    where = f"profiles file {path}"
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProfilesError(f"{where}: no such file (VOICEBOT_PROFILES)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ProfilesError(f"{where}: cannot read it: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ProfilesError(f"{where}: not valid TOML: {e}") from None
    try:
        spec = ProfilesFile.model_validate(raw)
    except ValidationError as e:
        raise ProfilesError(f"{where}: " + "; ".join(_describe(error) for error in e.errors())) from None
    problems = _cross_check(spec)
    bots = {}
    for name, profile in spec.bots.items():
        try:
            bots[name] = _resolve(name, profile, settings, providers)
        except ValueError as e:
            problems.append(f"profile {name!r}: {e}")
    if problems:
        raise ProfilesError(f"{where}: " + "; ".join(problems))
    default = spec.default or next(iter(spec.bots))
    return BotProfiles(bots, default, dict(spec.twilio.numbers), spec.twilio.default)


def _describe(error: dict) -> str:
    """`profile 'sales': idle_timeout_secs=-1: Input should be ...` from a pydantic error."""
    location = [str(part) for part in error.get("loc", ())]
    message = error.get("msg", "invalid")
    if error.get("type") == "extra_forbidden":
        message = "unknown key"
    value = error.get("input")
    shown = "" if isinstance(value, dict | list | tuple) or value is None else f"={value!r}"
    if len(location) >= 2 and location[0] == "bots":
        key = ".".join(location[2:]) or "(table)"
        return f"profile {location[1]!r}: {key}{shown}: {message}"
    return f"{'.'.join(location) or '(file)'}{shown}: {message}"


def _cross_check(spec: ProfilesFile) -> list[str]:
    """Names that must exist, and names fit for URLs and labels."""
    names = set(spec.bots)
    problems = [f"profile {name!r}: a bot name is 1-32 letters, digits, '-' or '_'"
                for name in spec.bots if not BOT_NAME.fullmatch(name)]  # fmt: skip
    listed = ", ".join(spec.bots)
    if spec.default is None and len(spec.bots) > 1:
        problems.append(f"default: name the profile used when a session names none (one of {listed})")
    for key, name in (("default", spec.default), ("twilio.default", spec.twilio.default)):
        if name is not None and name not in names:
            problems.append(f"{key}={name!r}: no such profile (profiles: {listed})")
    for number, name in spec.twilio.numbers.items():
        if not PHONE_NUMBER.fullmatch(number):
            problems.append(f'twilio.numbers.{number!r}: not an E.164 phone number like "+15550002222"')
        if name not in names:
            problems.append(f"twilio.numbers.{number!r}={name!r}: no such profile (profiles: {listed})")
    return problems


def _resolve(name: str, profile: Profile, settings: Settings, providers: Providers) -> Bot:
    """The bot's effective settings; ValueError (naming the key) when this server's services
    cannot run it."""
    update = {
        attribute: getattr(profile, key)
        for key, attribute in _SETTING_OF_KEY.items()
        if getattr(profile, key) is not None
    }
    update.update(_overrides(profile, providers))
    _check_language(update.get("language", settings.language), providers)
    bot_settings = settings.model_copy(update=update)
    if profile.silence_prompts is None:
        return Bot.from_settings(bot_settings, name)
    return Bot(name, bot_settings, tuple(profile.silence_prompts))


def _check_language(language: str, providers: Providers) -> None:
    """English on the offline stack: its Moonshine base-en, Piper voice and SmolLM2 speak
    nothing else."""
    local = [stage for stage in ("stt", "llm", "tts") if getattr(providers, stage) == "local"]
    if local and not language.startswith("en"):
        stages = ", ".join(f"{stage.upper()}=local" for stage in local)
        raise ValueError(f"language={language!r}: the offline stack ({stages}) speaks only English")


def _overrides(profile: Profile, providers: Providers) -> dict:
    """The provider-specific keys, refused where the service in use has no such choice."""
    update = {}
    if profile.llm_model is not None:
        if providers.llm == "local":
            raise ValueError(
                f"llm_model={profile.llm_model!r}: the embedded LLM serves one model "
                "(VOICEBOT_LOCAL_LLM_MODEL)"
            )
        update["openai_model"] = profile.llm_model
    if profile.tts_voice is not None:
        if providers.tts == "local":
            raise ValueError(f"tts_voice={profile.tts_voice!r}: the offline TTS (Piper) has one voice")
        update[f"{providers.tts}_tts_voice"] = profile.tts_voice
    return update
