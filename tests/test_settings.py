"""Settings: defaults, environment and .env, and one clear line for every mistake."""

from __future__ import annotations

import os

import pytest

from pipeline.settings import (
    RENAMED,
    Settings,
    SettingsError,
    _setting_names,
    deprecated_names,
    load_settings,
)


def test_defaults_run_offline_on_loopback(clean_env):
    settings = load_settings()
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert (settings.stt_provider, settings.llm_provider, settings.tts_provider) == ("auto",) * 3
    assert settings.bot_greeting
    assert settings.vad_stop_secs == pytest.approx(0.2)


def test_environment_values_are_typed(clean_env):
    clean_env.setenv("VOICEBOT_PORT", "9001")
    clean_env.setenv("VOICEBOT_VAD_STOP_SECS", "0.5")
    clean_env.setenv("VOICEBOT_GREETING", "")
    settings = load_settings()
    assert settings.port == 9001
    assert settings.vad_stop_secs == pytest.approx(0.5)
    assert settings.bot_greeting == ""


def test_dotenv_file_is_read_and_environment_wins(clean_env, tmp_path):
    (tmp_path / ".env").write_text("VOICEBOT_PORT=7000\nOPENAI_MODEL=gpt-test\n")
    clean_env.setenv("VOICEBOT_PORT", "7100")
    settings = load_settings()
    assert settings.port == 7100
    assert settings.openai_model == "gpt-test"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("VOICEBOT_STT_PROVIDER", "deepgarm", "VOICEBOT_STT_PROVIDER='deepgarm'"),
        ("VOICEBOT_PORT", "eighty", "VOICEBOT_PORT='eighty'"),
        ("VOICEBOT_PORT", "70000", "VOICEBOT_PORT='70000'"),
        ("VOICEBOT_VAD_STOP_SECS", "-1", "VOICEBOT_VAD_STOP_SECS='-1'"),
        ("VOICEBOT_LLM_PROVIDER", "deepgram", "VOICEBOT_LLM_PROVIDER='deepgram'"),
    ],
)
def test_invalid_value_names_the_variable(clean_env, name, value, expected):
    clean_env.setenv(name, value)
    with pytest.raises(SettingsError) as error:
        load_settings()
    message = str(error.value)
    assert expected in message
    assert "\n" not in message


def test_misspelt_variable_is_reported_with_a_suggestion(clean_env):
    clean_env.setenv("VOICEBOT_PROT", "9000")
    clean_env.setenv("VOICEBOT_STT_PROVDER", "local")
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert "VOICEBOT_PROT (did you mean VOICEBOT_PORT?)" in str(error.value)
    assert "VOICEBOT_STT_PROVDER (did you mean VOICEBOT_STT_PROVIDER?)" in str(error.value)


def test_unrelated_variables_with_a_shared_prefix_are_left_alone(clean_env):
    clean_env.setenv("OPENAI_ORGANIZATION", "org-1")
    load_settings()


def test_unknown_key_in_dotenv_is_reported(clean_env, tmp_path):
    (tmp_path / ".env").write_text("BOT_GRETING=hi\n")
    with pytest.raises(SettingsError, match="BOT_GRETING"):
        load_settings()


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({"VOICEBOT_STT_PROVIDER": "deepgram"}, "DEEPGRAM_API_KEY"),
        ({"VOICEBOT_TTS_PROVIDER": "openai"}, "OPENAI_API_KEY"),
        ({"VOICEBOT_LLM_PROVIDER": "openai"}, "OPENAI_API_KEY or OPENAI_BASE_URL"),
    ],
)
def test_explicit_cloud_provider_without_credentials_fails_at_start(clean_env, env, missing):
    for name, value in env.items():
        clean_env.setenv(name, value)
    with pytest.raises(SettingsError, match=missing):
        load_settings()


def test_cli_prints_one_line_and_exits_2_on_bad_settings(clean_env, capsys):
    from bots.cli import main

    clean_env.setenv("VOICEBOT_TTS_PROVIDER", "polly")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("voicebot: invalid configuration: VOICEBOT_TTS_PROVIDER='polly'")
    assert len(err.splitlines()) == 1


def test_old_names_still_work_and_each_is_named_in_one_deprecation_line(clean_env, tmp_path):
    (tmp_path / ".env").write_text("VAD_STOP_SECS=0.4\n")
    clean_env.setenv("BOT_GREETING", "Hi there")
    clean_env.setenv("LLM_PROVIDER", "local")
    settings = load_settings(tmp_path / ".env")
    assert (settings.bot_greeting, settings.llm_provider, settings.vad_stop_secs) == (
        "Hi there",
        "local",
        0.4,
    )
    lines = deprecated_names(dict(os.environ), tmp_path / ".env")
    assert sorted(lines) == sorted(
        f"{old} is deprecated: use {new} (the old name still works for now)"
        for old, new in [
            ("BOT_GREETING", "VOICEBOT_GREETING"),
            ("LLM_PROVIDER", "VOICEBOT_LLM_PROVIDER"),
            ("VAD_STOP_SECS", "VOICEBOT_VAD_STOP_SECS"),
        ]
    )


def test_every_setting_of_ours_starts_with_voicebot():
    vendors = ("DEEPGRAM_", "OPENAI_", "TWILIO_")
    names = [name for name in _setting_names() if name not in RENAMED]
    assert [name for name in names if not name.startswith(("VOICEBOT_", *vendors))] == []


def test_names_without_our_prefix_configure_nothing(clean_env):
    """A `PORT`, `HOST` or `GOODBYE` set for another program is not a setting of ours."""
    clean_env.setenv("HOST", "0.0.0.0")
    clean_env.setenv("PORT", "9001")
    clean_env.setenv("GOODBYE", "Laters")
    settings = load_settings()
    assert (settings.host, settings.port, settings.goodbye) == ("127.0.0.1", 8000, Settings().goodbye)
