"""Settings: defaults, environment and .env, and one clear line for every mistake."""

from __future__ import annotations

import pytest

from pipeline.settings import SettingsError, load_settings


def test_defaults_run_offline_on_loopback(clean_env):
    settings = load_settings()
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert (settings.stt_provider, settings.llm_provider, settings.tts_provider) == ("auto",) * 3
    assert settings.bot_greeting
    assert settings.vad_stop_secs == pytest.approx(0.2)


def test_environment_values_are_typed(clean_env):
    clean_env.setenv("VOICEBOT_PORT", "9001")
    clean_env.setenv("VAD_STOP_SECS", "0.5")
    clean_env.setenv("BOT_GREETING", "")
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
        ("STT_PROVIDER", "deepgarm", "STT_PROVIDER='deepgarm'"),
        ("VOICEBOT_PORT", "eighty", "VOICEBOT_PORT='eighty'"),
        ("VOICEBOT_PORT", "70000", "VOICEBOT_PORT='70000'"),
        ("VAD_STOP_SECS", "-1", "VAD_STOP_SECS='-1'"),
        ("LLM_PROVIDER", "deepgram", "LLM_PROVIDER='deepgram'"),
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
    clean_env.setenv("STT_PROVDER", "local")
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert "VOICEBOT_PROT (did you mean VOICEBOT_PORT?)" in str(error.value)
    assert "STT_PROVDER (did you mean STT_PROVIDER?)" in str(error.value)


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
        ({"STT_PROVIDER": "deepgram"}, "DEEPGRAM_API_KEY"),
        ({"TTS_PROVIDER": "openai"}, "OPENAI_API_KEY"),
        ({"LLM_PROVIDER": "openai"}, "OPENAI_API_KEY or OPENAI_BASE_URL"),
    ],
)
def test_explicit_cloud_provider_without_credentials_fails_at_start(clean_env, env, missing):
    for name, value in env.items():
        clean_env.setenv(name, value)
    with pytest.raises(SettingsError, match=missing):
        load_settings()


def test_cli_prints_one_line_and_exits_2_on_bad_settings(clean_env, capsys):
    from bots.cli import main

    clean_env.setenv("TTS_PROVIDER", "polly")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("voicebot: invalid configuration: TTS_PROVIDER='polly'")
    assert len(err.splitlines()) == 1
