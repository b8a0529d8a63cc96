"""Speculative replies through the real server: Deepgram STT (with interim results) and the OpenAI
LLM are local fakes speaking their wire protocols; the user's speech is real (Piper).

The LLM starts when the VAD hears the user stop, on the interim transcript. The Deepgram fake can
hold its final transcript (`final_gate`) and decide what it says, so each test fixes the order of
events (the speculative request arrives while the final is held) instead of timing them. The LLM
fake echoes the user ("You said: ..."), so a withdrawn reply is recognisable wherever it shows up.
"""

from __future__ import annotations

import threading

import pytest

from tests.fakes.deepgram_server import DeepgramBehaviour, FakeDeepgramServer
from tests.fakes.openai_server import FakeOpenAIServer, LLMBehaviour, last_user_message
from tests.support.pipecat_client import PipecatWebsocketClient, llm_text
from tests.support.server import ServerProcess, fake_services_env
from tests.support.speech import speech_pcm16, words

QUESTION = "What is the capital of France?"
FOLLOW_UP = "And what about Spain?"
ECHO = "You said: "


def _server(fakes, speculative: bool) -> ServerProcess:
    deepgram, openai = fakes
    env = {
        **fake_services_env(deepgram.base_url, openai.base_url),
        "OPENAI_API_KEY": "sk-test",
        "VOICEBOT_GREETING": "",
        "VOICEBOT_SILENCE_TIMEOUT_SECS": "0",
        "VOICEBOT_SPECULATIVE_REPLIES": "true" if speculative else "false",
    }
    return ServerProcess(env=env).start()


@pytest.fixture(scope="module")
def server(fakes):
    server = _server(fakes, speculative=True)
    yield server
    server.stop()


def _reset(fakes) -> None:
    """Fresh fakes for a test: interims every 0.5 s of audio, an echoing LLM, no requests yet."""
    deepgram, openai = fakes
    deepgram.behaviour = DeepgramBehaviour(interim_every_secs=0.5)
    openai.behaviour = LLMBehaviour(echo_user=True)
    openai.requests.clear()
    openai.requests_at.clear()
    openai.completed.clear()
    deepgram.speak_texts.clear()


@pytest.fixture
def session(server, fakes):
    """Fresh fakes for a session on the speculative server; its log clean at the end."""
    _reset(fakes)
    start = len(server.log())
    yield start
    server.wait_for_log(r"Session \w+ ended", start=start)
    assert server.unclean_lines(start) == []


def turn_metrics(client: PipecatWebsocketClient) -> list[dict]:
    return [m["data"]["turn"] for m in client.received.rtvi("metrics") if "turn" in m["data"]]


def finalizing(deepgram: FakeDeepgramServer):
    """The listen connection that has been asked for its final, if any."""
    listen = deepgram.listens[-1] if deepgram.listens else None
    return listen if listen is not None and "Finalize" in listen.messages else None


async def held_reply(client: PipecatWebsocketClient, deepgram: FakeDeepgramServer, openai: FakeOpenAIServer):
    """Wait until the LLM has streamed a whole reply to the turn's latest interim transcript (the
    one the final will be compared with) while Deepgram holds the final; its listen log and index."""

    def ready():
        listen = finalizing(deepgram)
        if listen is None or not listen.interims:
            return None
        latest = words(listen.interims[-1])
        done = [i for i in openai.completed if words(last_user_message(openai.requests[i])) == latest]
        return (listen, done[-1]) if done else None

    return await client.wait_for(lambda r: ready(), 20, "a speculative reply to the latest interim")


def conversation(request: dict) -> list[tuple[str, str]]:
    """A chat request's user and assistant messages, in order (the system prompt aside)."""
    return [(m["role"], str(m["content"])) for m in request["messages"] if m["role"] in ("user", "assistant")]


async def test_a_matching_final_keeps_the_reply_started_before_it(server, fakes, session):
    deepgram, openai = fakes
    final = threading.Event()
    deepgram.behaviour.final_gate = final
    deepgram.behaviour.final_repeats_interim = True  # the final matches what the LLM started on
    async with PipecatWebsocketClient(f"{server.ws_url}/ws") as client:
        client.say(speech_pcm16(QUESTION))
        listen, index = await held_reply(client, deepgram, openai)
        assert listen.finals_sent_at == [], "the LLM was asked before the final transcript existed"
        speculated = last_user_message(openai.requests[index])
        said = listen.transcripts[-1]  # the final, held
        final.set()
        await client.wait_for(lambda r: f"{ECHO}{speculated}" in llm_text(client), 15, "the kept reply")
        await client.wait_for(lambda r: turn_metrics(client), 15, "turn metrics")
        # The reply reached the client only after the final transcript confirmed the turn.
        first_text_at = client.received.times("bot-llm-text")[0]
        assert first_text_at > listen.finals_sent_at[0]
        assert all(at < listen.finals_sent_at[0] for at in openai.requests_at), "no inference after the final"
        assert turn_metrics(client)[0]["speculation"] == "kept"

        asked = len(openai.requests)
        client.say(speech_pcm16(FOLLOW_UP))
        await client.wait_for(lambda r: len(openai.requests) > asked, 20, "the follow-up's request")
    assert conversation(openai.requests[-1])[:2] == [("user", said), ("assistant", f"{ECHO}{speculated}")]
    server.wait_for_log(r"speculative reply kept", start=session)
    asked = [m["data"]["text"] for m in client.received.rtvi("user-llm-text")]
    assert asked[:1] == [speculated], asked  # reported once the turn kept it
    # The LLM started at the VAD's stop, not after smart-turn had judged that stop.
    log = server.log()[session:]
    assert log.index("speculating on") < log.index("End of Turn result"), "the reply waited for smart-turn"


async def test_a_different_final_withdraws_the_reply_without_a_trace(server, fakes, session):
    deepgram, openai = fakes
    final = threading.Event()
    deepgram.behaviour.final_gate = final
    deepgram.behaviour.final_text = "What is the capital of Spain?"  # not what the interims said
    async with PipecatWebsocketClient(f"{server.ws_url}/ws") as client:
        client.say(speech_pcm16(QUESTION))
        await held_reply(client, deepgram, openai)
        speculative = len(openai.requests)
        withdrawn = [f"{ECHO}{last_user_message(request)}" for request in openai.requests]
        final.set()
        await client.wait_for(
            lambda r: f"{ECHO}What is the capital of Spain?" in llm_text(client), 15, "the reply to the final"
        )
        await client.wait_for(lambda r: turn_metrics(client), 15, "turn metrics")
        assert turn_metrics(client)[0]["speculation"] == "withdrawn"
        assert turn_metrics(client)[0]["speculations_withdrawn"] >= 1

        deepgram.behaviour.final_text = None
        client.say(speech_pcm16(FOLLOW_UP))
        await client.wait_for(lambda r: llm_text(client).count(ECHO) == 2, 20, "the follow-up's reply")
    # Never heard or shown, and absent from every later request's context.
    for reply in withdrawn:
        assert reply not in llm_text(client) and reply not in "".join(deepgram.speak_texts)
    # The client is told what the LLM answered, not what it was asked in vain.
    asked = [m["data"]["text"] for m in client.received.rtvi("user-llm-text")]
    assert asked[:1] == ["What is the capital of Spain?"], asked
    assert conversation(openai.requests[speculative]) == [("user", "What is the capital of Spain?")]
    for later in openai.requests[speculative + 1 :]:
        assert conversation(later)[:2] == [
            ("user", "What is the capital of Spain?"),
            ("assistant", f"{ECHO}What is the capital of Spain?"),
        ]
    server.wait_for_log(r"speculative reply withdrawn: the final transcript differs", start=session)


async def test_a_pause_mid_sentence_withdraws_the_reply_and_the_turn_is_answered_once(server, fakes, session):
    deepgram, openai = fakes
    final = threading.Event()
    deepgram.behaviour.final_gate = final  # the pause's final waits until the user has resumed
    deepgram.behaviour.final_repeats_interim = True  # the pause's final at once
    async with PipecatWebsocketClient(f"{server.ws_url}/ws") as client:
        client.say(speech_pcm16("Tell me the capital"))
        await client.wait_for(lambda r: openai.requests, 20, "the speculative request at the pause")
        assert "france" not in words(last_user_message(openai.requests[0]))
        listen = await client.wait_for(lambda r: finalizing(deepgram), 15, "the pause's Finalize")
        pause_final = listen.transcripts[0]
        # The rest's final at once, so the turn's end is not left to Pipecat's fallback for a
        # late final (the STT's p99 latency after the VAD's stop), which a loaded CPU can miss.
        deepgram.behaviour.final_text = "of the country called France."
        client.say(speech_pcm16("of the country called France."))
        await client.wait_for(
            lambda r: "speculative reply withdrawn: the user resumed" in server.log()[session:],
            15,
            "the withdrawal when the user resumed",
        )
        final.set()
        await client.wait_for(
            lambda r: "france" in words(llm_text(client)), 20, "the answer to the whole question"
        )
        await client.wait_for(lambda r: turn_metrics(client), 15, "turn metrics")
    assert llm_text(client).count(ECHO) == 1, f"answered once: {llm_text(client)!r}"
    assert len(client.received.times("bot-started-speaking")) == 1
    answered = last_user_message(openai.requests[-1])
    assert words(answered) == words(f"{pause_final} of the country called France."), answered
    assert turn_metrics(client)[0]["speculations_withdrawn"] >= 1


async def test_barge_in_during_a_speculative_reply(server, fakes, session):
    deepgram, openai = fakes
    long_reply = "Paris is the capital of France, and it has been for a very long time indeed."
    openai.behaviour = LLMBehaviour(reply=long_reply)
    deepgram.behaviour.final_repeats_interim = True
    deepgram.behaviour.tts_seconds_per_char = 0.12  # about nine seconds of bot speech
    async with PipecatWebsocketClient(f"{server.ws_url}/ws") as client:
        client.say(speech_pcm16(QUESTION))
        await client.wait_for(lambda r: r.rtvi("bot-started-speaking"), 20, "the bot to start speaking")
        await client.wait_for(lambda r: turn_metrics(client), 15, "turn metrics")
        assert turn_metrics(client)[0]["speculation"] == "kept"
        openai.behaviour = LLMBehaviour(reply="Go ahead.")
        # The barge-in's final is transcribed from its audio: repeating an interim could repeat
        # none, when no interim of it is out yet by the Finalize (a loaded machine).
        deepgram.behaviour.final_repeats_interim = False
        client.say(speech_pcm16("Wait, stop please."))
        await client.wait_for(lambda r: len(r.times("bot-started-speaking")) >= 2, 20, "the second reply")
    received = client.received
    assert received.rtvi("bot-interrupted")
    first_reply, second_reply = received.times("bot-started-speaking")[:2]
    heard = len(received.audio_between(first_reply, second_reply)) / (24000 * 2)
    assert heard < 0.12 * len(long_reply) * 0.8, f"{heard:.1f}s of the long reply was sent"
    # The interrupted reply is in the context once, as far as it was spoken, after its question.
    answering = [r for r in openai.requests if words(last_user_message(r))[:1] == ["wait"]]
    assert answering, [conversation(r) for r in openai.requests]
    history = conversation(answering[-1])
    assert [role for role, _ in history] == ["user", "assistant", "user"], history
    spoken = words(history[1][1])
    assert spoken and spoken == words(long_reply)[: len(spoken)], history[1]
    assert words(history[2][1])[:2] == ["wait", "stop"], history[2]


APOLOGY = "Sorry, I'm having trouble answering right now. Could you say that again?"


def spoken(received) -> str:
    """Everything the bot finished saying, its sentences joined."""
    return " ".join(received.bot_texts())


@pytest.mark.parametrize(
    "fault",
    [LLMBehaviour(status=500), LLMBehaviour(reply="Paris is the capital of France.", drop_after_tokens=2)],
    ids=["500", "drop-mid-stream"],
)
async def test_an_llm_failure_during_a_speculative_reply_is_apologised_for_once(
    server, fakes, session, fault
):
    """The speculative inference fails (and its retry too): the apology is what the gate holds,
    released once the turn confirms it, spoken once; the next turn is answered normally."""
    deepgram, openai = fakes
    deepgram.behaviour.final_repeats_interim = True  # the turn confirms the speculation
    openai.behaviour = fault
    async with PipecatWebsocketClient(f"{server.ws_url}/ws") as client:
        client.say(speech_pcm16(QUESTION))
        await client.wait_for(lambda r: APOLOGY in spoken(r), 20, "the apology spoken")
        await client.wait_for(lambda r: turn_metrics(client), 15, "turn metrics")
        assert turn_metrics(client)[0]["speculation"] == "kept"
        openai.behaviour = LLMBehaviour(echo_user=True)
        deepgram.behaviour.final_repeats_interim = False
        client.say(speech_pcm16(FOLLOW_UP))
        await client.wait_for(lambda r: any(t.startswith(ECHO) for t in r.bot_texts()), 20, "the next answer")
    assert spoken(client.received).count(APOLOGY) == 1, spoken(client.received)


async def test_the_setting_turns_speculation_off(fakes):
    """With VOICEBOT_SPECULATIVE_REPLIES=false the LLM is asked only once the final has been sent."""
    deepgram, openai = fakes
    _reset(fakes)
    final = threading.Event()
    deepgram.behaviour.final_gate = final
    plain = _server(fakes, speculative=False)
    start = len(plain.log())
    try:
        async with PipecatWebsocketClient(f"{plain.ws_url}/ws") as client:
            client.say(speech_pcm16(QUESTION))
            listen = await client.wait_for(lambda r: finalizing(deepgram), 20, "the user to stop speaking")
            assert openai.requests == [], "nothing asked of the LLM while the final is held"
            final.set()
            await client.wait_for(lambda r: turn_metrics(client), 20, "the turn's metrics")
        assert openai.requests_at[0] > listen.finals_sent_at[0]
        assert turn_metrics(client)[0]["speculation"] is None
        plain.wait_for_log(r"Session \w+ ended", start=start)
        assert "speculat" not in plain.log()[start:].lower()
        assert plain.unclean_lines(start) == []
    finally:
        plain.stop()
