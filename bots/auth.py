"""Who may open a session: API keys, single-use signed tokens, allowed origins (README: Security model).

A server is *private* when bound to loopback with no VOICEBOT_PUBLIC_URL: nothing is asked, but
only requests that are plainly local are served (a loopback `Host` and no proxy headers), so a
tunnel or a DNS-rebinding page cannot reach it. Otherwise it is *public*: every session needs an
API key (`Authorization: Bearer …` or `X-API-Key`) or a session token (`?token=`) minted by
`POST /session`, which itself needs a key, or, only if VOICEBOT_ANONYMOUS_PAGE_TOKENS is on, a
browser from an allowed origin. Tokens are single-use and short-lived; keys never go in URLs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from ipaddress import ip_address
from urllib.parse import urlsplit

from pipeline.settings import Settings

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
# Headers a reverse proxy or tunnel adds; a private server never sees them from a local client.
PROXY_HEADERS = (
    "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-forwarded-port", "forwarded", "via",
    "x-real-ip", "cf-connecting-ip", "true-client-ip", "x-client-ip",
)  # fmt: skip
PAGE_TOKEN_SECS = 30  # an anonymous page token only has to survive one page load
CALL_TICKET_SECS = 120  # Twilio opens the stream right after fetching the TwiML
MAX_TOKEN_CHARS = 512
MAX_LIVE_NONCES = 200_000  # spent nonces remembered until they expire; beyond this, refuse new ones


def is_loopback(hostname: str | None) -> bool:
    if not hostname:
        return False
    if hostname == "localhost":
        return True
    try:
        return ip_address(hostname).is_loopback
    except ValueError:
        return False


def is_public(settings: Settings, bind_host: str) -> bool:
    """Reachable by others: bound beyond loopback, or published through a proxy or tunnel."""
    return bind_host not in LOOPBACK_HOSTS or settings.public_url is not None


def hostname_of(authority: str) -> str | None:
    """The host name in a `Host` header or an origin's authority; None if it does not parse."""
    try:
        return urlsplit("//" + authority).hostname
    except ValueError:  # e.g. "[" (an unterminated IPv6 literal)
        return None


def private_refusal(headers: Mapping[str, str]) -> str | None:
    """Why a request to a private server is not plainly local (None when it is)."""
    if any(name in headers for name in PROXY_HEADERS):
        return "this voicebot is private (bound to loopback) and refuses proxied requests"
    if not is_loopback(hostname_of(headers.get("host", ""))):
        return "this voicebot is private (bound to loopback) and answers only to localhost"
    return None


PRIVATE_HINT = "; set VOICEBOT_PUBLIC_URL (and VOICEBOT_API_KEYS) to serve it through a proxy or tunnel"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Tokens:
    """Signed, expiring, single-use tokens bound to a purpose (and optionally to a value).

    The token carries `expiry.nonce`; the signature also covers the purpose and the bound value,
    which the verifier supplies, so a token for one purpose or call is useless for another.
    Spent nonces are remembered per process until they expire.
    """

    def __init__(self, secret: bytes, clock: Callable[[], float] = time.time):
        self._secret = secret
        self.clock = clock
        self._spent: dict[str, float] = {}

    def _signature(self, purpose: str, payload: str, bound: str) -> bytes:
        message = f"{purpose}|{payload}|{bound}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    def mint(self, purpose: str, lifetime: int, bound: str = "") -> str:
        payload = f"{int(self.clock()) + lifetime}.{secrets.token_urlsafe(12)}"
        return f"{_b64(payload.encode())}.{_b64(self._signature(purpose, payload, bound))}"

    def redeem(self, purpose: str, token: str, bound: str = "") -> bool:
        """True once for a genuine, unexpired token; False for anything else, cheaply."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            return False
        try:
            encoded_payload, encoded_signature = token.split(".", 1)
            payload = _unb64(encoded_payload).decode("ascii")
            signature = _unb64(encoded_signature)
            expires = int(payload.split(".", 1)[0])
        except (ValueError, UnicodeError):
            return False
        if not hmac.compare_digest(signature, self._signature(purpose, payload, bound)):
            return False
        now = self.clock()
        if now >= expires or payload in self._spent:
            return False
        self._forget_expired(now)
        if len(self._spent) >= MAX_LIVE_NONCES:
            return False
        self._spent[payload] = expires
        return True

    def _forget_expired(self, now: float) -> None:
        """Drop spent nonces whose tokens have expired anyway. Tokens of one purpose are minted
        with one lifetime, so expiry follows insertion order: drop from the front until the
        first live one (amortised O(1) per redemption, and the table never fills up with
        dead entries)."""
        for payload, expires in list(itertools.islice(self._spent.items(), 64)):
            if expires > now:
                return
            del self._spent[payload]
        if len(self._spent) >= MAX_LIVE_NONCES:  # mixed lifetimes: a full sweep, rarely
            self._spent = {payload: expires for payload, expires in self._spent.items() if expires > now}


class Access:
    def __init__(self, settings: Settings, *, bind_host: str, clock: Callable[[], float] = time.time):
        self._keys = [key.strip().encode() for key in settings.api_keys.split(",") if key.strip()]
        self._origins = {o.strip().rstrip("/") for o in settings.allowed_origins.split(",") if o.strip()}
        secret = (
            settings.session_secret.get_secret_value() if settings.session_secret else secrets.token_hex(32)
        )
        self.tokens = Tokens(secret.encode(), clock)
        self._token_secs = settings.session_token_secs
        self.anonymous_page_tokens = settings.anonymous_page_tokens
        self.public = is_public(settings, bind_host)
        self.required = bool(self._keys) or self.public
        self._tickets: OrderedDict[str, tuple[str, float]] = OrderedDict()  # CallSid -> ticket, expiry

    # --- origins --------------------------------------------------------------------------

    def origin_allowed(self, origin: str | None, host: str) -> bool:
        """No Origin (not a browser) is fine; a browser must come from us, localhost, or the list."""
        if not origin:
            return True
        origin = origin.rstrip("/")
        try:
            parts = urlsplit(origin)
            hostname = parts.hostname
        except ValueError:  # not an origin at all
            return False
        if origin in self._origins or parts.netloc == host:
            return True
        return is_loopback(hostname) and not self.required

    # --- credentials ----------------------------------------------------------------------

    def key_presented(self, headers: Mapping[str, str]) -> bool:
        """A configured API key in `Authorization: Bearer` or `X-API-Key`, compared as bytes in
        constant time (a key in the URL would end up in access logs, so it is not looked for)."""
        bearer = headers.get("authorization", "")
        presented = [bearer[len("Bearer ") :].strip() if bearer.startswith("Bearer ") else "",
                     headers.get("x-api-key", "")]  # fmt: skip
        found = False
        for candidate in (p.encode("utf-8", "surrogateescape") for p in presented if p):
            for key in self._keys:
                found |= hmac.compare_digest(candidate, key)
        return found

    def mint_session_token(self, *, anonymous: bool, bot: str = "") -> tuple[str, int]:
        """A single-use token for `?token=`: short-lived for an anonymous page, longer for a
        backend holding a key (it hands it to its user's browser). It opens a session of `bot`
        (a profile name) and of no other."""
        lifetime = min(PAGE_TOKEN_SECS, self._token_secs) if anonymous else self._token_secs
        return self.tokens.mint("session", lifetime, bot), lifetime

    def authorised(self, headers: Mapping[str, str], query: Mapping[str, str], bot: str = "") -> bool:
        """An API key (any bot), or a session token minted for this `bot`."""
        if not self.required:
            return True
        return self.key_presented(headers) or self.tokens.redeem("session", query.get("token", ""), bot)

    # --- Twilio ---------------------------------------------------------------------------

    def call_ticket(self, call_sid: str, account_sid: str, bot: str = "") -> str:
        """A signed `<Parameter>` for the TwiML: only this call's stream can present it, once,
        for the bot (profile) the webhook chose. A replayed webhook gets the same ticket back,
        never a second session for the call."""
        now = self.tokens.clock()
        while self._tickets and next(iter(self._tickets.values()))[1] <= now:
            self._tickets.popitem(last=False)
        issued = self._tickets.get(call_sid)
        if issued is None:
            ticket = self.tokens.mint("twilio-stream", CALL_TICKET_SECS, f"{call_sid}|{account_sid}|{bot}")
            issued = self._tickets[call_sid] = (ticket, now + CALL_TICKET_SECS)
        return issued[0]

    def call_ticket_valid(self, ticket: str, call_sid: str, account_sid: str, bot: str = "") -> bool:
        return self.tokens.redeem("twilio-stream", ticket, f"{call_sid}|{account_sid}|{bot}")
