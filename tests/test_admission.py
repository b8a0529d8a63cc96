"""Admission: capacity reserved atomically, shared fairly between client addresses."""

from __future__ import annotations

import pytest

from bots.admission import Admission, RateWindow, Refused
from bots.client_address import client_address, client_key
from pipeline.settings import trusted_networks


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_slots_are_counted_at_reservation_and_released_once():
    admission = Admission(max_sessions=2, max_per_client=0, new_per_minute=0)
    first, second = admission.reserve("a"), admission.reserve("b")
    with pytest.raises(Refused, match="server full"):
        admission.reserve("c")
    first.release()
    first.release()  # every path may release; only the first counts
    assert admission.reserved == 1
    admission.reserve("c")
    second.release()
    admission.draining = True
    with pytest.raises(Refused, match="shutting down"):
        admission.reserve("d")


def test_one_address_cannot_take_every_slot():
    admission = Admission(max_sessions=10, max_per_client=2, new_per_minute=0)
    held = [admission.reserve("10.0.0.1"), admission.reserve("10.0.0.1")]
    with pytest.raises(Refused, match="too many sessions from your address"):
        admission.reserve("10.0.0.1")
    admission.reserve("10.0.0.2")  # others still get in
    held[0].release()
    admission.reserve("10.0.0.1")
    admission.reserve("10.0.0.1", exempt=True)  # Twilio's signed streams share a few addresses


def test_new_sessions_per_minute_per_address():
    clock = Clock()
    admission = Admission(max_sessions=100, max_per_client=0, new_per_minute=3, clock=clock)
    for _ in range(3):
        admission.reserve("10.0.0.1").release()
    with pytest.raises(Refused, match="too many new sessions"):
        admission.reserve("10.0.0.1")
    admission.reserve("10.0.0.2")
    clock.now += 60.0
    admission.reserve("10.0.0.1")


def test_zero_turns_the_per_client_limits_off():
    admission = Admission(max_sessions=50, max_per_client=0, new_per_minute=0)
    for _ in range(50):
        admission.reserve("load-generator")


def test_the_client_address_comes_from_a_trusted_proxy_only():
    proxies = trusted_networks("10.0.0.0/8, 192.168.1.5")
    forwarded = {"x-forwarded-for": "198.51.100.7, 203.0.113.9, 10.1.2.3"}
    assert client_address("203.0.113.50", forwarded, proxies) == "203.0.113.50"  # not a proxy: forged
    assert client_address("10.0.0.4", forwarded, proxies) == "203.0.113.9"  # nearest untrusted hop
    assert client_address("192.168.1.5", {"x-forwarded-for": "junk"}, proxies) == "192.168.1.5"
    assert client_address("10.0.0.4", {}, proxies) == "10.0.0.4"
    assert client_address(None, forwarded, proxies) == "unknown"
    assert client_address("10.0.0.4", forwarded, []) == "10.0.0.4"


def test_every_forwarded_line_counts_and_ipv6_is_counted_per_slash_64():
    from starlette.datastructures import Headers

    proxies = trusted_networks("10.0.0.0/8")
    two_lines = Headers(raw=[(b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-for", b"203.0.113.9")])
    assert client_address("10.0.0.1", two_lines, proxies) == "203.0.113.9"  # not the forged first line
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert client_key("203.0.113.9") == "203.0.113.9"


def test_the_rate_table_forgets_clients_idle_for_a_minute():
    clock = Clock()
    window = RateWindow(5, clock)
    for n in range(10_000):
        window.allow(f"10.0.{n // 256}.{n % 256}")
    clock.now += 61
    window.allow("10.9.9.9")
    assert len(window._events) == 1


def test_one_address_never_gets_half_a_small_server():
    small = Admission(max_sessions=2, max_per_client=3, new_per_minute=0)
    small.reserve("flood")
    with pytest.raises(Refused, match="at most 1"):
        small.reserve("flood")
    small.reserve("caller")
