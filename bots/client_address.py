"""Which client a connection comes from, for per-client limits.

The peer address is the client, unless the peer is one of VOICEBOT_TRUSTED_PROXIES: then the
client is the nearest address in `X-Forwarded-For` that is not itself a trusted proxy (read
from the right, since anything further left was written by the client and may be forged).
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network

from starlette.datastructures import Headers

Networks = list[IPv4Network | IPv6Network]
UNKNOWN_CLIENT = "unknown"
MAX_FORWARDED_HOPS = 16  # more than any real proxy chain; the rest of a forged header is ignored


def _trusted(address: str, proxies: Networks) -> bool:
    try:
        ip = ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_key(address: str) -> str:
    """What per-client limits count: the address, or its /64 for IPv6 (one subscriber's
    allocation, where every address is a free new "client")."""
    try:
        ip = ip_address(address)
    except ValueError:
        return address
    return str(ip_network(f"{ip}/64", strict=False)) if ip.version == 6 else str(ip)


def client_address(peer: str | None, headers: Headers | Mapping[str, str], proxies: Networks) -> str:
    """The client's IP address as a string (`unknown` when the transport has none)."""
    if not peer:
        return UNKNOWN_CLIENT
    if not proxies or not _trusted(peer, proxies):
        return peer
    # Every X-Forwarded-For line, in order: some proxies add a line instead of extending one.
    lines = (
        headers.getlist("x-forwarded-for")
        if isinstance(headers, Headers)
        else [headers.get("x-forwarded-for", "")]
    )
    hops = [hop.strip() for hop in ",".join(lines).split(",")[-MAX_FORWARDED_HOPS:]]
    for hop in reversed(hops):
        if not hop:
            continue
        try:
            ip_address(hop)
        except ValueError:
            return peer  # a garbled header: count the proxy itself, never a made-up name
        if not _trusted(hop, proxies):
            return hop
    return peer
