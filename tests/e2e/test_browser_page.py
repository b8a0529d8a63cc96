"""The browser page in a real headless Chromium with a fake microphone playing a spoken question."""

from __future__ import annotations

import shutil
import wave
from pathlib import Path

import pytest

from tests.fakes.openai_server import FakeOpenAIServer, LLMBehaviour
from tests.support.server import ServerProcess
from tests.support.speech import silence_pcm16, speech_pcm16, word_error_rate

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
QUESTION = "What is the capital of France?"
REPLY = "Paris is the capital of France."

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")


@pytest.fixture(scope="module")
def page_server():
    llm = FakeOpenAIServer(LLMBehaviour(reply=REPLY)).start()
    env = {
        "VOICEBOT_GREETING": "",
        "OPENAI_BASE_URL": llm.base_url,
        "VOICEBOT_SILENCE_TIMEOUT_SECS": "4",
        "VOICEBOT_SILENCE_PROMPTS": "0",
    }
    server = ServerProcess(env=env).start()
    yield server
    server.stop()
    llm.stop()


@pytest.fixture
def microphone_file(tmp_path) -> Path:
    """What the fake microphone plays once: a pause, the spoken question, then silence."""
    path = tmp_path / "question.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(silence_pcm16(1.5) + speech_pcm16(QUESTION) + silence_pcm16(1.0))
    return path


def launch(playwright, microphone_file: Path):
    """Headless Chromium whose fake microphone plays `microphone_file` once."""
    return playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={microphone_file}%noloop",
            "--autoplay-policy=no-user-gesture-required",
        ],
    )  # fmt: skip


def test_a_person_talks_to_the_bot_in_the_page(page_server, microphone_file):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    console_errors: list[str] = []
    with sync_playwright() as playwright:
        browser = launch(playwright, microphone_file)
        page = browser.new_page(viewport={"width": 900, "height": 820})
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: console_errors.append(str(e)))
        page.goto(f"{page_server.base_url}/?autoconnect=1")

        page.wait_for_function(
            "window.voicebot.transcripts.some(t => t.role === 'user' && t.final)", timeout=40000
        )
        page.wait_for_function("window.voicebot.transcripts.some(t => t.role === 'bot')", timeout=30000)
        page.wait_for_function("window.voicebot.endedReason === 'silence_timeout'", timeout=40000)
        page.screenshot(path=str(ARTIFACTS / "browser-page.png"))
        state = page.evaluate("window.voicebot")
        ended_text = page.inner_text("#ended-text")
        latency = page.inner_text("#latency")
        call_again_visible = page.is_visible("#again")
        browser.close()

    user_text = " ".join(t["text"] for t in state["transcripts"] if t["role"] == "user" and t["final"])
    assert word_error_rate(QUESTION, user_text) <= 0.25, user_text
    assert REPLY in [t["text"] for t in state["transcripts"] if t["role"] == "bot"]
    assert state["botAudioMs"] > 500
    assert state["state"] == "ended"
    assert ended_text == "Ended: no one spoke for 4 seconds."
    assert call_again_visible
    assert latency.endswith(" ms")
    assert console_errors == []
    assert page_server.unclean_lines() == []


def test_the_page_lets_the_user_pick_a_bot(tmp_path):
    """With several bots the page shows a choice (`?bot=` preselects one); the session is that bot's."""
    from playwright.sync_api import sync_playwright

    profiles = tmp_path / "bots.toml"
    profiles.write_text(
        'default = "support"\n'
        '[bots.support]\ngreeting = "Hello, support here."\n'
        '[bots.sales]\ngreeting = "Hi, sales here."\n'
    )
    llm = FakeOpenAIServer(LLMBehaviour(reply=REPLY)).start()
    server = ServerProcess(env={"VOICEBOT_PROFILES": str(profiles), "OPENAI_BASE_URL": llm.base_url}).start()
    microphone = tmp_path / "silence.wav"
    with wave.open(str(microphone), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(silence_pcm16(5))
    try:
        with sync_playwright() as playwright:
            browser = launch(playwright, microphone)
            page = browser.new_page()
            page.goto(f"{server.base_url}/?bot=sales&autoconnect=1")
            page.wait_for_function("window.voicebot.transcripts.some(t => t.role === 'bot')", timeout=40000)
            page.click("#call")  # hang up
            page.wait_for_function("window.voicebot.endedReason === 'client_hangup'", timeout=10000)
            options = page.eval_on_selector_all("#bot option", "options => options.map(o => o.value)")
            chosen, choice_visible = page.input_value("#bot"), page.is_visible("#bot-choice")
            state = page.evaluate("window.voicebot")
            browser.close()
    finally:
        server.stop()
        llm.stop()
    assert (options, chosen, choice_visible) == (["support", "sales"], "sales", True)
    assert next(t["text"] for t in state["transcripts"] if t["role"] == "bot") == "Hi, sales here."
    assert server.unclean_lines() == []
