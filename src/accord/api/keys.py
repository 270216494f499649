"""API keys: created with a role, shown once, stored hashed, revocable.

A key looks like ``acc_3f9c2a1b_<32 url-safe characters>``: the ``acc_``
marker (so a secret scanner can spot a leaked key), an 8-character public
prefix that listings show, and 192 random bits. Only the SHA-256 of the whole
key is stored; a key that is lost cannot be recovered, only revoked and
replaced. Creating and revoking a key are audit entries.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Row, select, update

from accord.domain.ids import new_id
from accord.errors import InvalidInput
from accord.store import append, utc_now
from accord.store.api_tables import API_ROLES, api_keys

__all__ = [
    "KEY_MARKER",
    "ApiKey",
    "CreatedKey",
    "create_key",
    "find_key",
    "hash_key",
    "list_keys",
    "revoke_key",
]

#: Every API key starts with this, so that a leaked key is recognisable.
KEY_MARKER = "acc_"


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key as stored: never the key itself."""

    id: str
    prefix: str
    role: str
    name: str
    created_by: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True, slots=True)
class CreatedKey:
    """A new key: ``secret`` is shown once and never stored."""

    key: ApiKey
    secret: str


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _key(row: Row[Any]) -> ApiKey:
    return ApiKey(
        id=row.id,
        prefix=row.prefix,
        role=row.role,
        name=row.name,
        created_by=row.created_by,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


def create_key(engine: Engine, role: str, *, name: str = "", actor: str = "cli") -> CreatedKey:
    """Mint a key for ``role``; the returned ``secret`` is the only copy."""
    if role not in API_ROLES:
        raise InvalidInput(
            f"unknown role {role!r} (one of {', '.join(API_ROLES)})", record="key", field="role"
        )
    prefix = secrets.token_hex(4)
    secret = f"{KEY_MARKER}{prefix}_{secrets.token_urlsafe(24)}"
    now = utc_now()
    key = ApiKey(new_id(), prefix, role, name, actor, now, None)
    with engine.begin() as conn:
        conn.execute(
            api_keys.insert().values(
                id=key.id,
                prefix=prefix,
                key_hash=hash_key(secret),
                role=role,
                name=name,
                created_by=actor,
                created_at=now,
            )
        )
        append(
            conn,
            actor=actor,
            action="api_key.created",
            subject=f"api_key/{key.id}",
            data={"prefix": prefix, "role": role, "name": name},
            at=now,
        )
    return CreatedKey(key, secret)


def find_key(engine: Engine, secret: str) -> ApiKey | None:
    """The active key with this secret, or None (unknown, malformed or revoked)."""
    if not secret.startswith(KEY_MARKER):
        return None
    with engine.connect() as conn:
        row = conn.execute(
            select(api_keys).where(api_keys.c.key_hash == hash_key(secret))
        ).one_or_none()
    if row is None or row.revoked_at is not None:
        return None
    return _key(row)


def list_keys(engine: Engine, *, include_revoked: bool = False) -> list[ApiKey]:
    query = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
    if not include_revoked:
        query = query.where(api_keys.c.revoked_at.is_(None))
    with engine.connect() as conn:
        return [_key(row) for row in conn.execute(query)]


def revoke_key(engine: Engine, key_id_or_prefix: str, *, actor: str = "cli") -> ApiKey:
    """Revoke a key by its id or its public prefix; it stops working at once."""
    with engine.begin() as conn:
        rows = conn.execute(
            select(api_keys).where(
                (api_keys.c.id == key_id_or_prefix) | (api_keys.c.prefix == key_id_or_prefix)
            )
        ).all()
        if not rows:
            raise InvalidInput(f"no API key {key_id_or_prefix!r}", record="key", field="id")
        if len(rows) > 1:
            raise InvalidInput(
                f"prefix {key_id_or_prefix!r} matches {len(rows)} keys; give the id",
                record="key",
                field="id",
            )
        row = rows[0]
        if row.revoked_at is not None:
            return _key(row)
        now = utc_now()
        conn.execute(update(api_keys).where(api_keys.c.id == row.id).values(revoked_at=now))
        append(
            conn,
            actor=actor,
            action="api_key.revoked",
            subject=f"api_key/{row.id}",
            data={"prefix": row.prefix, "role": row.role},
            at=now,
        )
        return ApiKey(row.id, row.prefix, row.role, row.name, row.created_by, row.created_at, now)
