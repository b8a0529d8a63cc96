"""Who may open a session: API keys, short-lived signed session tokens, and allowed origins.

On a loopback interface with no keys configured nothing is asked (no friction on a laptop).
On any other interface, or once VOICEBOT_API_KEYS is set, a WebSocket upgrade must carry an API
key (`Authorization: Bearer …`, `X-API-Key`, or `?token=`) or a session token from
`POST /session`, which the served page fetches for itself. Browsers' `Origin` must be allowed:
the server's own origin and localhost always, plus VOICEBOT_ALLOWED_ORIGINS.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

from pipeline.settings import Settings

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


class Access:
    def __init__(self, settings: Settings, *, bind_host: str):
        self._keys = {key.strip() for key in settings.api_keys.split(",") if key.strip()}
        self._origins = {o.strip().rstrip("/") for o in settings.allowed_origins.split(",") if o.strip()}
        secret = (
            settings.session_secret.get_secret_value() if settings.session_secret else secrets.token_hex(32)
        )
        self._secret = secret.encode()
        self._token_secs = settings.session_token_secs
        self.required = bool(self._keys) or bind_host not in LOOPBACK_HOSTS

    # --- origins --------------------------------------------------------------------------

    def origin_allowed(self, origin: str | None, host: str) -> bool:
        """No Origin (not a browser) is fine; a browser must come from us, localhost, or the list."""
        if not origin:
            return True
        origin = origin.rstrip("/")
        if origin in self._origins or urlsplit(origin).netloc == host:
            return True
        return urlsplit(origin).hostname in LOOPBACK_HOSTS and not self.required

    # --- credentials ----------------------------------------------------------------------

    def issue_token(self) -> tuple[str, int]:
        """Expiry and nonce, signed; set VOICEBOT_SESSION_SECRET to share tokens across processes."""
        payload = f"{int(time.time()) + self._token_secs}.{secrets.token_urlsafe(12)}"
        signature = hmac.new(self._secret, payload.encode(), hashlib.sha256).digest()
        token = (
            base64.urlsafe_b64encode(payload.encode()).decode()
            + "."
            + base64.urlsafe_b64encode(signature).decode()
        )
        return token, self._token_secs

    def token_valid(self, token: str) -> bool:
        try:
            encoded_payload, encoded_signature = token.split(".", 1)
            payload = base64.urlsafe_b64decode(encoded_payload.encode())
            signature = base64.urlsafe_b64decode(encoded_signature.encode())
            expires = int(payload.split(b".", 1)[0])
        except (ValueError, TypeError):
            return False
        expected = hmac.new(self._secret, payload, hashlib.sha256).digest()
        return hmac.compare_digest(signature, expected) and time.time() < expires

    def authorised(self, headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
        if not self.required:
            return True
        bearer = headers.get("authorization", "")
        presented = [
            bearer.removeprefix("Bearer ").strip() if bearer.startswith("Bearer ") else "",
            headers.get("x-api-key", ""),
            query.get("token", ""),
        ]
        if any(p and any(hmac.compare_digest(p, key) for key in self._keys) for p in presented):
            return True
        return bool(query.get("token")) and self.token_valid(query["token"])
