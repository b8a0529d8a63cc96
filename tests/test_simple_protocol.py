"""The simple protocol's serializer on its own: size limits before parsing, the audio budget as
the decoder's cap, and the decoder's thread closed with the session."""

from __future__ import annotations

import json

import pytest
from pipecat.frames.frames import InputAudioRawFrame

from tests.support.audio_files import encode, flac_silence, media_recorder_webm
from tests.support.speech import silence_pcm16
from transports import audio_decoder, simple_protocol
from transports.audio_budget import BURST_SECS
from transports.simple_protocol import MAX_JSON_BYTES, ClientReplyFrame, SimpleProtocolSerializer


def serializer() -> SimpleProtocolSerializer:
    return SimpleProtocolSerializer(session_id="test")


async def test_an_oversized_json_message_is_refused_before_parsing(monkeypatch):
    parsed = []
    monkeypatch.setattr(simple_protocol.json, "loads", lambda text: parsed.append(text))
    text = "é" * (MAX_JSON_BYTES // 2 + 100)  # fewer characters than the limit, more bytes
    reply = await serializer().deserialize(json.dumps({"type": "text", "text": text}, ensure_ascii=False))
    assert isinstance(reply, ClientReplyFrame) and reply.message["code"] == "message_too_large"
    assert parsed == []


async def test_a_json_message_under_the_limit_is_parsed():
    reply = await serializer().deserialize('{"type": "start", "pad": "' + "x" * (MAX_JSON_BYTES - 100) + '"}')
    assert isinstance(reply, ClientReplyFrame) and reply.message["type"] == "ready"


async def test_the_budget_left_caps_decoding(monkeypatch):
    decoded_secs = []
    add = audio_decoder._Pcm.add

    def counting_add(pcm, frame):
        if frame is not None:
            decoded_secs.append(frame.samples / frame.sample_rate)
        return add(pcm, frame)

    monkeypatch.setattr(audio_decoder._Pcm, "add", counting_add)
    protocol = serializer()
    reply = await protocol.deserialize(flac_silence(2 * 3600))
    assert sum(decoded_secs) <= BURST_SECS + max(decoded_secs), "stopped at the budget"
    assert isinstance(reply, ClientReplyFrame) and reply.message["code"] == "audio_too_fast"
    frame = await protocol.deserialize(encode(silence_pcm16(100.0), "flac"))  # within 120 s
    assert isinstance(frame, InputAudioRawFrame) and len(frame.audio) == 100 * 32000
    reply = await protocol.deserialize(encode(silence_pcm16(30.0), "flac"))  # 130 s in all
    assert isinstance(reply, ClientReplyFrame) and reply.message["code"] == "audio_too_fast"


@pytest.mark.parametrize("message", [b"OggS" + bytes(range(256)) * 4, b"\x1a\x45\xdf\xa3" + bytes(64)])
async def test_a_broken_stream_is_a_bad_audio_error(message):
    reply = await serializer().deserialize(message)
    assert isinstance(reply, ClientReplyFrame) and reply.message["code"] == "bad_audio"


async def test_cleanup_closes_an_open_stream():
    protocol = serializer()
    await protocol.deserialize(media_recorder_webm(silence_pcm16(1.0)))
    thread = protocol._decoder._stream._thread
    assert thread.is_alive()
    await protocol.cleanup()
    assert not thread.is_alive()


async def test_a_push_to_talk_message_says_how_much_audio_came_before_it():
    serializer = SimpleProtocolSerializer(session_id="test")
    await serializer.deserialize(silence_pcm16(0.1))
    await serializer.deserialize(silence_pcm16(0.2))

    button = await serializer.deserialize(json.dumps({"type": "ptt", "active": False}))

    assert button.active is False
    assert button.after_audio_secs == pytest.approx(0.3)
