"""Access rules: open on loopback, keys or fresh signed tokens elsewhere, browsers from allowed origins."""

from __future__ import annotations

import time

from bots.auth import Access
from pipeline.settings import Settings


def access(bind_host: str = "127.0.0.1", **settings) -> Access:
    return Access(Settings(**settings), bind_host=bind_host)


def test_loopback_without_keys_asks_nothing(clean_env):
    assert access().authorised({}, {})


def test_a_public_interface_requires_credentials(clean_env):
    public = access(bind_host="0.0.0.0")
    assert not public.authorised({}, {})
    token, _ = public.issue_token()
    assert public.authorised({}, {"token": token})


def test_api_keys_in_a_header_or_the_query(clean_env):
    keyed = access(api_keys="k1, k2")
    assert keyed.required
    assert keyed.authorised({"authorization": "Bearer k2"}, {})
    assert keyed.authorised({"x-api-key": "k1"}, {})
    assert keyed.authorised({}, {"token": "k1"})
    assert not keyed.authorised({"authorization": "Bearer nope"}, {"token": "nope"})


def test_tokens_are_signed_and_expire(clean_env, monkeypatch):
    one = access(api_keys="k", session_token_secs=60)
    other = access(api_keys="k")
    token, expires_in = one.issue_token()
    assert expires_in == 60 and one.token_valid(token)
    assert not other.token_valid(token), "another secret: not ours"
    assert not one.token_valid(token[:-4] + "AAA=")
    later = time.time() + 61
    monkeypatch.setattr(time, "time", lambda: later)
    assert not one.token_valid(token)


def test_a_shared_secret_lets_workers_accept_each_others_tokens(clean_env):
    first = access(api_keys="k", session_secret="s3cret")
    second = access(api_keys="k", session_secret="s3cret")
    assert second.token_valid(first.issue_token()[0])


def test_origins(clean_env):
    local = access()
    assert local.origin_allowed(None, "bot:8000")  # not a browser
    assert local.origin_allowed("http://localhost:5173", "127.0.0.1:8000")
    assert not local.origin_allowed("https://evil.example", "127.0.0.1:8000")
    public = access(bind_host="0.0.0.0", allowed_origins="https://app.example.com")
    assert public.origin_allowed("https://voice.example.com", "voice.example.com")  # same origin
    assert public.origin_allowed("https://app.example.com/", "voice.example.com")
    assert not public.origin_allowed("http://localhost:3000", "voice.example.com")
