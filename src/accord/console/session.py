"""Console sessions and CSRF tokens: signed, expiring, never holding the key.

Signing in with an API key yields a session token: a small JSON payload
(session id, the principal's id, role and name, expiry) followed by an
HMAC-SHA256 signature. It travels in an ``HttpOnly``, ``SameSite=Strict``
cookie. The key itself is checked once, at sign-in, and then forgotten.
Every request re-checks that the key behind the session is still active,
so revoking a key ends its console sessions at once.

Each form the console renders carries a CSRF token derived from the session
id (an HMAC with its own purpose label); every console ``POST`` must send it
back, in the form or in the ``X-CSRF-Token`` header. The sign-in form, which
has no session yet, is tied the same way to a random nonce kept in a
short-lived cookie.

The signing secret comes from ``ACCORD_CONSOLE_SECRET`` (at least 32
characters; give the same value to every API process behind one address),
else it is drawn at random when the process starts, which signs everyone out
on restart.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = [
    "SECRET_ENV",
    "ConsoleSession",
    "SessionSigner",
    "secret_from_env",
]

#: The environment variable holding the signing secret shared by API processes.
SECRET_ENV = "ACCORD_CONSOLE_SECRET"
_MIN_SECRET = 32


def secret_from_env() -> bytes:
    """The configured secret, or a random one for this process."""
    configured = os.environ.get(SECRET_ENV, "")
    if configured:
        if len(configured) < _MIN_SECRET:
            raise ValueError(f"{SECRET_ENV} must be at least {_MIN_SECRET} characters long")
        return configured.encode()
    return secrets.token_bytes(32)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    """Who is signed in, from a verified session token."""

    sid: str
    """Random session id: what the CSRF token is bound to."""
    principal_id: str
    """``key:<key id>``: the API key the session was opened with (never the key)."""
    role: str
    name: str
    """The actor that audit entries record (the key's public prefix)."""
    expires: datetime


class SessionSigner:
    """Issues and checks session tokens and CSRF tokens with one secret."""

    def __init__(self, secret: bytes, ttl: timedelta = timedelta(hours=8)) -> None:
        if len(secret) < 16:
            raise ValueError("the session secret must be at least 16 bytes")
        self._secret = secret
        self.ttl = ttl

    def _mac(self, purpose: str, message: bytes) -> bytes:
        return hmac.new(self._secret, purpose.encode() + b"\0" + message, hashlib.sha256).digest()

    def issue(self, principal_id: str, role: str, name: str, now: datetime) -> str:
        """A signed token for a new session that expires ``ttl`` from ``now``."""
        payload = {
            "sid": secrets.token_urlsafe(18),
            "pid": principal_id,
            "role": role,
            "name": name,
            "exp": int((now + self.ttl).timestamp()),
        }
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        return f"{_b64(body)}.{_b64(self._mac('session', body))}"

    def read(self, token: str | None, now: datetime) -> ConsoleSession | None:
        """The session of a token, or None if it is malformed, forged or expired."""
        if not token or token.count(".") != 1:
            return None
        encoded, signature = token.split(".")
        try:
            body = _unb64(encoded)
            given = _unb64(signature)
        except ValueError:
            return None
        if not hmac.compare_digest(given, self._mac("session", body)):
            return None
        try:
            payload = json.loads(body)
            expires = datetime.fromtimestamp(int(payload["exp"]), tz=now.tzinfo)
            session = ConsoleSession(
                sid=str(payload["sid"]),
                principal_id=str(payload["pid"]),
                role=str(payload["role"]),
                name=str(payload["name"]),
                expires=expires,
            )
        except (ValueError, KeyError, TypeError):
            return None
        return session if now < session.expires else None

    def csrf(self, bound_to: str) -> str:
        """The CSRF token of a session id (or of a sign-in nonce)."""
        return _b64(self._mac("csrf", bound_to.encode()))

    def csrf_ok(self, bound_to: str | None, token: str | None) -> bool:
        if not bound_to or not token:
            return False
        return hmac.compare_digest(token.encode(), self.csrf(bound_to).encode())
