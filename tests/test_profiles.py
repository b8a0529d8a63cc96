"""Bot profiles: the TOML file, what each bot resolves to, and one clear line for every mistake."""

from __future__ import annotations

import pytest

from pipeline.profiles import DEFAULT_BOT, ProfilesError, load_profiles
from pipeline.providers import Providers
from pipeline.settings import load_settings

CLOUD = Providers(stt="deepgram", llm="openai", tts="deepgram")
OFFLINE = Providers(stt="local", llm="local", tts="local")

EXAMPLE = """
default = "support"
[bots.support]
greeting = "Hello, support here. How can I help?"
system_prompt = "You are a patient support agent."
silence_prompts = [
  { after_secs = 10, say = "Are you still there?" },
  { after_secs = 8, say = "I'll hang up soon." },
]
[bots.sales]
greeting = "Hi! Looking for a new plan?"
goodbye = "Thanks for calling. Bye!"
tts_voice = "aura-2-thalia-en"
idle_timeout_secs = 20
end_on_goodbye = false
[twilio.numbers]
"+15550002222" = "sales"
"""


def bots_from(clean_env, tmp_path, text: str, providers: Providers = CLOUD, **env):
    path = tmp_path / "bots.toml"
    path.write_text(text)
    clean_env.setenv("VOICEBOT_PROFILES", str(path))
    for name, value in env.items():
        clean_env.setenv(name, value)
    return load_profiles(load_settings(), providers)


def refusal(clean_env, tmp_path, text: str, providers: Providers = CLOUD) -> str:
    with pytest.raises(ProfilesError) as refused:
        bots_from(clean_env, tmp_path, text, providers)
    message = str(refused.value)
    assert "\n" not in message and str(tmp_path / "bots.toml") in message
    return message


def test_each_bot_overrides_the_environment_and_inherits_the_rest(clean_env, tmp_path):
    bots = bots_from(clean_env, tmp_path, EXAMPLE, VOICEBOT_GOODBYE="Env goodbye.", OPENAI_MODEL="gpt-env")
    assert bots.names == ["support", "sales"] and bots.default == "support"
    support, sales = bots.get("support"), bots.get("sales")
    assert bots.get(None) is support and bots.get("") is support
    assert support.settings.bot_greeting == "Hello, support here. How can I help?"
    assert support.settings.goodbye == "Env goodbye."  # unset: from the environment
    assert [(p.after_secs, p.say) for p in support.silence_prompts] == [
        (10, "Are you still there?"),
        (8, "I'll hang up soon."),
    ]
    assert sales.settings.goodbye == "Thanks for calling. Bye!"
    assert sales.settings.deepgram_tts_voice == "aura-2-thalia-en"
    assert sales.settings.idle_timeout_secs == 20 and support.settings.idle_timeout_secs == 30
    assert sales.settings.end_on_goodbye is False and support.settings.end_on_goodbye is True
    assert sales.settings.openai_model == "gpt-env"
    # The environment's single silence prompt, when a profile sets none.
    assert [(p.after_secs, p.say) for p in sales.silence_prompts] == [(20.0, "Are you still there?")]


def test_names_are_looked_up_never_trusted(clean_env, tmp_path):
    bots = bots_from(clean_env, tmp_path, EXAMPLE)
    for name in ("Sales", "../sales", "sales ", "nobody", "__init__", "default"):
        assert bots.get(name) is None


def test_twilio_numbers_choose_the_bot_with_a_default(clean_env, tmp_path):
    bots = bots_from(clean_env, tmp_path, EXAMPLE)
    assert bots.for_number("+15550002222").name == "sales"
    assert bots.for_number("+15550009999").name == "support"
    assert bots.for_number("").name == "support"
    answering = EXAMPLE.replace("[twilio.numbers]", '[twilio]\ndefault = "sales"\n[twilio.numbers]')
    with_phone_default = bots_from(clean_env, tmp_path, answering)
    assert with_phone_default.for_number("+15550009999").name == "sales"


def test_without_a_file_the_environment_is_the_one_bot(clean_env):
    clean_env.setenv("VOICEBOT_GREETING", "Hi from the environment.")
    bots = load_profiles(load_settings(), OFFLINE)
    assert bots.names == [DEFAULT_BOT] and bots.default == DEFAULT_BOT
    assert bots.get(None).settings.bot_greeting == "Hi from the environment."


@pytest.mark.parametrize(
    "text, expected",
    [
        ('[bots.a]\ngreting = "hi"\n', "profile 'a': greting='hi': unknown key"),
        ("[bots.a]\nidle_timeout_secs = -1\n", "profile 'a': idle_timeout_secs=-1: Input should be greater"),
        ('[bots.a]\nidle_timeout_secs = "20"\n', "profile 'a': idle_timeout_secs='20': Input should be"),
        ('[bots.a]\nend_on_goodbye = "yes"\n', "profile 'a': end_on_goodbye='yes': Input should be"),
        (
            '[bots.a]\nsilence_prompts = [{ after_secs = 0, say = "hi" }]\n',
            "profile 'a': silence_prompts.0.after_secs=0: Input should be greater than 0",
        ),
        ('[bots.a]\nlanguage = "french"\n', "profile 'a': language='french': String should match"),
        ('default = "b"\n[bots.a]\n', "default='b': no such profile (profiles: a)"),
        ("[bots.a]\n[bots.b]\n", "default: name the profile used when a session names none"),
        ('[bots."a b"]\n', "profile 'a b': a bot name is 1-32 letters"),
        ('[bots.a]\n[twilio.numbers]\n"+15550002222" = "b"\n', "twilio.numbers.'+15550002222'='b': no such"),
        ('[bots.a]\n[twilio.numbers]\n"555" = "a"\n', "twilio.numbers.'555': not an E.164 phone number"),
        ('[bots.a]\n[twilio]\ndefualt = "a"\n', "twilio.defualt='a': unknown key"),
        ("bots = 3\n", "bots=3: Input should be"),
        ("[bots]\n", "bots: Dictionary should have at least 1 item"),
        ("[bots.a\n", "not valid TOML"),
    ],
)
def test_a_bad_file_is_one_line_naming_file_profile_and_key(clean_env, tmp_path, text, expected):
    assert expected in refusal(clean_env, tmp_path, text)


@pytest.mark.parametrize(
    "profile, expected",
    [
        ('language = "fr"', "profile 'a': language='fr': the offline stack (STT=local, LLM=local, TTS"),
        ('llm_model = "gpt-4o"', "profile 'a': llm_model='gpt-4o': the embedded LLM serves one model"),
        ('tts_voice = "amy"', "profile 'a': tts_voice='amy': the offline TTS (Piper) has one voice"),
    ],
)
def test_a_bot_the_services_cannot_run_is_refused(clean_env, tmp_path, profile, expected):
    assert expected in refusal(clean_env, tmp_path, f"[bots.a]\n{profile}\n", OFFLINE)


def test_the_same_bot_runs_on_cloud_services(clean_env, tmp_path):
    profile = '[bots.a]\nlanguage = "fr"\nllm_model = "gpt-4o"\ntts_voice = "x"\n'
    bots = bots_from(clean_env, tmp_path, profile)
    settings = bots.get("a").settings
    assert (settings.language, settings.openai_model, settings.deepgram_tts_voice) == ("fr", "gpt-4o", "x")


def test_a_missing_file_is_named(clean_env, tmp_path):
    clean_env.setenv("VOICEBOT_PROFILES", str(tmp_path / "nope.toml"))
    with pytest.raises(ProfilesError, match=r"nope.toml: no such file"):
        load_profiles(load_settings(), CLOUD)


def test_voicebot_local_refuses_an_unknown_bot_in_one_line(clean_env, tmp_path, capsys):
    from bots.cli import main

    (tmp_path / "bots.toml").write_text('[bots.sales]\ngreeting = "Hi"\n')
    clean_env.setenv("VOICEBOT_PROFILES", str(tmp_path / "bots.toml"))
    assert main(["local", "--bot", "support"]) == 2
    assert capsys.readouterr().err.strip() == "voicebot local: unknown bot 'support' (bots: sales)"
