"""TwiML and URLs for Twilio: the stream URL follows VOICEBOT_PUBLIC_URL or the request."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from pipeline.settings import Settings
from transports.twilio import (
    MAX_EVENT_BYTES,
    TwilioCall,
    note_mark,
    parse_event,
    stream_url,
    twiml_connect,
    valid_sids,
    webhook_url,
)


@pytest.mark.parametrize(
    ("public_url", "host", "scheme", "expected"),
    [
        (None, "bot.local:8000", "http", "ws://bot.local:8000/twilio/ws"),
        (None, "bot.example.com", "https", "wss://bot.example.com/twilio/ws"),
        ("https://voice.example.com", "10.0.0.5:8000", "http", "wss://voice.example.com/twilio/ws"),
        ("https://voice.example.com/bot/", "x", "http", "wss://voice.example.com/bot/twilio/ws"),
        ("http://tunnel.test", "x", "http", "ws://tunnel.test/twilio/ws"),
    ],
)
def test_stream_url(clean_env, public_url, host, scheme, expected):
    settings = Settings.from_fields(public_url=public_url)
    assert stream_url(settings, host, scheme) == expected


def test_webhook_url_behind_a_proxy(clean_env):
    assert webhook_url(
        Settings.from_fields(public_url="https://voice.example.com"), "http://10.0.0.5:8000/twilio/voice"
    ) == ("https://voice.example.com/twilio/voice")
    assert (
        webhook_url(Settings(), "http://127.0.0.1:8000/twilio/voice") == "http://127.0.0.1:8000/twilio/voice"
    )


def test_twiml_escapes_parameters():
    twiml = twiml_connect(
        "wss://x/twilio/ws", call_sid="CA1", from_number="+1 <&>", to_number="+2", ticket="t.s"
    )
    stream = ET.fromstring(twiml).find("./Connect/Stream")
    assert stream.get("url") == "wss://x/twilio/ws"
    parameters = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    assert parameters["from"] == "+1 <&>" and parameters["voicebotTicket"] == "t.s"


def test_only_twilio_shaped_ids_of_our_account_pass(clean_env):
    ours = "AC" + "ab" * 16
    assert valid_sids(Settings(), "CA" + "0f" * 16, ours)
    assert valid_sids(Settings.from_fields(twilio_account_sid=ours), "CA" + "0f" * 16, ours)
    assert not valid_sids(Settings.from_fields(twilio_account_sid=ours), "CA" + "0f" * 16, "AC" + "cd" * 16)
    for call in (
        "../Conferences/CF" + "0" * 32,
        "CA" + "0" * 31,
        "CA" + "0" * 32 + "/x",
        "CA" + "g" * 32,
        "",
    ):
        assert not valid_sids(Settings(), call, ours), call
    assert not valid_sids(Settings(), "CA" + "0" * 32, "AC" + "0" * 31 + "?")


def test_odd_twilio_events_are_ignored_not_raised_on():
    call = TwilioCall("MZ1", "CA" + "0" * 32, "AC" + "0" * 32)
    note_mark(call, {"event": "mark", "mark": "x"})
    assert not call.end_mark_played.is_set()
    assert parse_event("[" * 60_000) is None
    assert parse_event('{"event": "media"' + " " * MAX_EVENT_BYTES + "}") is None
    assert parse_event('{"event": "stop"}') == {"event": "stop"}
