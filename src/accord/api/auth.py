"""Who is calling, and may they: API keys, OIDC JWTs, roles and permissions.

A request carries ``Authorization: Bearer <credential>``. A credential that
starts with ``acc_`` is an API key (looked up by its hash); anything else is
taken as a JWT from the configured OpenID Connect issuer, verified as RS256
against the issuer's JWKS, with ``iss``, ``aud`` and ``exp`` checked, and the
role read from a configured claim.

Each route declares the permission it needs (:class:`Permission`);
:data:`GRANTS` says which roles hold which permission. No or a bad credential
is 401, a role without the permission is 403. The role table:

============  ===========================================================
admin         everything
finance       reads; acts on the ``finance`` exception queue
pmo           reads; acts on the ``pmo`` exception queue
sales_ops     reads; acts on the ``sales_ops`` exception queue
auditor       reads everything, changes nothing
integration   reads of business records; writes (pushed changes)
============  ===========================================================
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import jwt
from sqlalchemy import Engine

from accord.api.keys import KEY_MARKER, find_key
from accord.api.problems import Problem
from accord.config import OidcSettings
from accord.store.api_tables import API_ROLES

__all__ = [
    "GRANTS",
    "Authenticator",
    "JwtVerifier",
    "Permission",
    "Principal",
    "QUEUE_ROLES",
    "roles_for",
]

#: Roles that own an exception queue of their own (admin sees and acts on all).
QUEUE_ROLES = ("finance", "pmo", "sales_ops")


class Permission(StrEnum):
    READ_RECORDS = "read:records"
    """Canonical business records, traces, KPIs, reconciliation runs."""
    WRITE_RECORDS = "write:records"
    """Push changes into the inbox on behalf of a system."""
    READ_EXCEPTIONS = "read:exceptions"
    """The exception queue (a queue role sees its own)."""
    ACT_EXCEPTIONS = "act:exceptions"
    """Assign, resolve, ignore or retry exception items (a queue role: its own)."""
    READ_OPERATIONS = "read:operations"
    """Dead letters and the audit chain."""
    REPLAY = "replay"
    """Replay dead letters."""


_ALL_READS = {Permission.READ_RECORDS, Permission.READ_EXCEPTIONS}

#: Which roles hold which permission.
GRANTS: Mapping[str, frozenset[Permission]] = {
    "admin": frozenset(Permission),
    "finance": frozenset({*_ALL_READS, Permission.ACT_EXCEPTIONS}),
    "pmo": frozenset({*_ALL_READS, Permission.ACT_EXCEPTIONS}),
    "sales_ops": frozenset({*_ALL_READS, Permission.ACT_EXCEPTIONS}),
    "auditor": frozenset({*_ALL_READS, Permission.READ_OPERATIONS}),
    "integration": frozenset({Permission.READ_RECORDS, Permission.WRITE_RECORDS}),
}


def roles_for(permission: Permission) -> list[str]:
    """The roles that hold ``permission``, in the order of :data:`API_ROLES`."""
    return [role for role in API_ROLES if permission in GRANTS[role]]


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    id: str
    """``key:<key id>`` or ``jwt:<issuer>#<sub>``: what rate limits and idempotency key on."""
    role: str
    name: str
    """What audit entries record as the actor."""

    def can(self, permission: Permission) -> bool:
        return permission in GRANTS.get(self.role, frozenset())


class JwtVerifier:
    """Verifies RS256 JWTs from one issuer against its JWKS (a file or a URL)."""

    def __init__(self, settings: OidcSettings) -> None:
        self.settings = settings
        self._client: jwt.PyJWKClient | None = None
        self._keys: dict[str, jwt.PyJWK] = {}
        if settings.jwks_file:
            document = json.loads(Path(settings.jwks_file).read_text())
            for jwk in jwt.PyJWKSet.from_dict(document).keys:
                self._keys[str(jwk.key_id)] = jwk
        else:
            assert settings.jwks_url is not None
            self._client = jwt.PyJWKClient(settings.jwks_url, cache_keys=True, lifespan=300)

    def _signing_key(self, token: str) -> Any:
        if self._client is not None:
            return self._client.get_signing_key_from_jwt(token).key
        kid = jwt.get_unverified_header(token).get("kid")
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values())).key
        if kid not in self._keys:
            raise jwt.InvalidTokenError(f"unknown signing key {kid!r}")
        return self._keys[kid].key

    def verify(self, token: str) -> Principal:
        s = self.settings
        try:
            claims = jwt.decode(
                token,
                self._signing_key(token),
                algorithms=["RS256"],
                audience=s.audience,
                issuer=s.issuer,
                leeway=s.leeway_seconds,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except (jwt.PyJWTError, ValueError) as exc:
            raise Problem(401, "unauthenticated", f"token refused: {exc}") from None
        value = claims.get(s.role_claim)
        candidates = value if isinstance(value, list) else [value]
        role = next((r for r in candidates if isinstance(r, str) and r in API_ROLES), None)
        if role is None:
            raise Problem(
                403, "forbidden", f"the token's {s.role_claim!r} claim names no Accord role"
            )
        subject = str(claims["sub"])
        return Principal(f"jwt:{s.issuer}#{subject}", role, f"jwt:{subject}")


class Authenticator:
    """Turns an ``Authorization`` header into a :class:`Principal`, or a 401 problem."""

    def __init__(self, engine: Engine, jwt_verifier: JwtVerifier | None = None) -> None:
        self.engine = engine
        self.jwt = jwt_verifier

    def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Problem(
                401,
                "unauthenticated",
                "send an API key or token as 'Authorization: Bearer …'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        scheme, _, credential = authorization.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise Problem(
                401,
                "unauthenticated",
                "the Authorization header must be 'Bearer <key or token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if credential.startswith(KEY_MARKER):
            key = find_key(self.engine, credential)
            if key is None:
                raise Problem(
                    401,
                    "unauthenticated",
                    "unknown or revoked API key",
                    headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
                )
            return Principal(f"key:{key.id}", key.role, f"key:{key.prefix}")
        if self.jwt is None:
            raise Problem(
                401,
                "unauthenticated",
                "not an API key, and no OIDC issuer is configured for tokens",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        return self.jwt.verify(credential)
