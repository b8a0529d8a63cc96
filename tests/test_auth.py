"""Access rules: private on loopback, keys or single-use signed tokens when public."""

from __future__ import annotations

import pytest

from bots.auth import PAGE_TOKEN_SECS, Access, private_refusal
from pipeline.settings import Settings


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def access(bind_host: str = "127.0.0.1", clock: Clock | None = None, **settings) -> Access:
    return Access(Settings.from_fields(**settings), bind_host=bind_host, clock=clock or Clock())


def test_loopback_without_keys_asks_nothing(clean_env):
    local = access()
    assert not local.public and local.authorised({}, {})


@pytest.mark.parametrize(
    "bind_host, settings",
    [("0.0.0.0", {}), ("127.0.0.2", {}), ("127.0.0.1", {"public_url": "https://bot.example.com"})],
)
def test_a_public_bind_or_a_public_url_requires_credentials(clean_env, bind_host, settings):
    public = access(bind_host, **settings)
    assert public.public and not public.authorised({}, {})
    token, _ = public.mint_session_token(anonymous=False)
    assert public.authorised({}, {"token": token})


def test_api_keys_only_in_headers_compared_as_bytes(clean_env):
    keyed = access(api_keys="k1, k2")
    assert keyed.required
    assert keyed.authorised({"authorization": "Bearer k2"}, {})
    assert keyed.authorised({"x-api-key": "k1"}, {})
    assert not keyed.authorised({}, {"token": "k1"}), "a key in the URL would land in access logs"
    assert not keyed.authorised({"authorization": "Bearer nope"}, {"token": "nope"})
    # Non-ASCII input used to raise TypeError in compare_digest (HTTP 500).
    assert not keyed.authorised({"x-api-key": "kë", "authorization": "Bearer ☃"}, {"token": "ü"})
    assert access(api_keys="clé").authorised({"x-api-key": "clé"}, {})


def test_tokens_are_single_use_signed_and_expire(clean_env):
    clock = Clock()
    one = access(api_keys="k", session_token_secs=60, clock=clock)
    other = access(api_keys="k", clock=clock)
    token, expires_in = one.mint_session_token(anonymous=False)
    assert expires_in == 60
    assert not other.authorised({}, {"token": token}), "another secret: not ours"
    assert not one.authorised({}, {"token": token[:-4] + "AAAA"})
    assert one.authorised({}, {"token": token})
    assert not one.authorised({}, {"token": token}), "a token opens one session"
    late, _ = one.mint_session_token(anonymous=False)
    clock.now += 61
    assert not one.authorised({}, {"token": late})


def test_anonymous_page_tokens_live_briefly(clean_env):
    clock = Clock()
    public = access("0.0.0.0", clock=clock, session_token_secs=600)
    token, expires_in = public.mint_session_token(anonymous=True)
    assert expires_in == PAGE_TOKEN_SECS
    clock.now += PAGE_TOKEN_SECS
    assert not public.authorised({}, {"token": token})


def test_a_shared_secret_lets_workers_accept_each_others_tokens(clean_env):
    first = access(api_keys="k", session_secret="s3cret")
    second = access(api_keys="k", session_secret="s3cret")
    assert second.authorised({}, {"token": first.mint_session_token(anonymous=False)[0]})


def test_call_tickets_bind_a_stream_to_its_call_once(clean_env):
    tickets = access("0.0.0.0", session_secret="s")
    call, account = "CA" + "1" * 32, "AC" + "2" * 32
    ticket = tickets.call_ticket(call, account)
    assert not tickets.call_ticket_valid(ticket, "CA" + "3" * 32, account), "another call"
    assert not tickets.authorised({}, {"token": ticket}), "a call ticket is not a session token"
    assert tickets.call_ticket_valid(ticket, call, account)
    assert not tickets.call_ticket_valid(ticket, call, account), "replayed"


def test_origins(clean_env):
    local = access()
    assert local.origin_allowed(None, "bot:8000")  # not a browser
    assert local.origin_allowed("http://localhost:5173", "127.0.0.1:8000")
    assert not local.origin_allowed("https://evil.example", "127.0.0.1:8000")
    public = access(bind_host="0.0.0.0", allowed_origins="https://app.example.com")
    assert public.origin_allowed("https://voice.example.com", "voice.example.com")  # same origin
    assert public.origin_allowed("https://app.example.com/", "voice.example.com")
    assert not public.origin_allowed("http://localhost:3000", "voice.example.com")


def test_a_private_server_answers_only_plainly_local_requests():
    assert private_refusal({"host": "127.0.0.1:8000"}) is None
    assert private_refusal({"host": "localhost:8000"}) is None
    assert private_refusal({"host": "[::1]:8000"}) is None
    assert private_refusal({"host": "rebind.attacker.example:8000"})  # DNS rebinding
    assert private_refusal({"host": "127.0.0.1:8000", "x-forwarded-for": "203.0.113.9"})  # ngrok
    assert private_refusal({"host": "127.0.0.1:8000", "cf-connecting-ip": "203.0.113.9"})  # cloudflared
    assert private_refusal({})


def test_spent_tokens_are_forgotten_once_expired_so_the_table_never_locks_up(clean_env):
    clock = Clock()
    tokens = access("0.0.0.0", clock=clock, session_token_secs=10).tokens
    for _ in range(3):  # many rounds of a full window of redemptions
        for _ in range(5000):
            assert tokens.redeem("session", tokens.mint("session", 10))
        clock.now += 11
    assert len(tokens._spent) <= 5000 + 64
    assert tokens.redeem("session", tokens.mint("session", 10))


def test_a_replayed_webhook_gets_the_same_ticket_back(clean_env):
    clock = Clock()
    tickets = access("0.0.0.0", clock=clock, session_secret="s")
    call, account = "CA" + "1" * 32, "AC" + "2" * 32
    first = tickets.call_ticket(call, account)
    assert tickets.call_ticket(call, account) == first
    assert tickets.call_ticket_valid(first, call, account)
    assert not tickets.call_ticket_valid(tickets.call_ticket(call, account), call, account)
    clock.now += 121
    assert tickets.call_ticket(call, account) != first  # a new call attempt, much later


def test_unparseable_hosts_and_origins_are_refused_not_crashed_on(clean_env):
    assert private_refusal({"host": "["})
    assert not access("0.0.0.0").origin_allowed("http://[", "bot.example")
    assert private_refusal({"host": "127.0.0.1:8000", "via": "1.1 proxy"})
    assert private_refusal({"host": "localhost:8000", "x-forwarded-proto": "https"})


def test_a_session_token_opens_only_the_bot_it_was_minted_for(clean_env):
    public = access("0.0.0.0")
    token, _ = public.mint_session_token(anonymous=False, bot="sales")
    assert not public.authorised({}, {"token": token}, "support")
    assert not public.authorised({}, {"token": token}, "")
    assert public.authorised({}, {"token": token}, "sales")  # a refused try did not spend it
    assert not public.authorised({}, {"token": token}, "sales")


def test_a_call_ticket_is_bound_to_the_bot_the_webhook_chose(clean_env):
    server = access()
    call, account = "CA" + "1" * 32, "AC" + "2" * 32
    ticket = server.call_ticket(call, account, "sales")
    assert not server.call_ticket_valid(ticket, call, account, "support")
    assert not server.call_ticket_valid(ticket, call, account, "")
    assert server.call_ticket_valid(ticket, call, account, "sales")
