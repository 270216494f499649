"""The REST API's tables, on the store's ``metadata``.

Like :mod:`accord.store.quota_tables`, they live beside
:mod:`accord.store.tables`; importing this module (``accord.store`` does)
registers them on the same ``metadata``. Migration ``0005`` creates them.

* ``api_keys``: one row per API key. Only the SHA-256 of the key is stored
  (keys are 192 random bits, so a plain hash cannot be reversed by guessing);
  ``prefix`` is the visible start of the key, to tell keys apart in listings.
  A revoked key keeps its row, with ``revoked_at`` set.
* ``api_idempotency``: the outcome of each ``POST`` sent with an
  ``Idempotency-Key``, per caller, so a retry gets the stored response and a
  reuse of the key for another request is refused.
* ``exception_actions``: who did what to an exception-queue item and why
  (assign, resolve, ignore, retry) — the item keeps only its latest state.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Column,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from accord.store.tables import SeqInteger, UTCDateTime, metadata

__all__ = [
    "API_ROLES",
    "EXCEPTION_ACTIONS",
    "IDEMPOTENCY_STATES",
    "api_idempotency",
    "api_keys",
    "exception_actions",
]

#: The roles an API key or token may carry.
API_ROLES = ("admin", "finance", "pmo", "sales_ops", "auditor", "integration")
#: ``api_idempotency.state``: the first request still running, or its response stored.
IDEMPOTENCY_STATES = ("running", "done")
#: What a person may do to an exception-queue item.
EXCEPTION_ACTIONS = ("assign", "resolve", "ignore", "retry")


def _one_of(column: str, values: tuple[str, ...], name: str) -> CheckConstraint:
    allowed = ", ".join(f"'{value}'" for value in values)
    return CheckConstraint(f'"{column}" IN ({allowed})', name=name)


#: API keys: hashed, with a role, revocable.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(), nullable=False),
    Column("prefix", String(), nullable=False),
    Column("key_hash", String(64), nullable=False),
    Column("role", String(), nullable=False),
    Column("name", String(), nullable=False),
    Column("created_by", String(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime(), nullable=True),
    PrimaryKeyConstraint("id"),
    UniqueConstraint("key_hash"),
    _one_of("role", API_ROLES, "role"),
)

#: Stored outcomes of POSTs sent with an Idempotency-Key, per caller.
api_idempotency = Table(
    "api_idempotency",
    metadata,
    Column("principal", String(), nullable=False),
    Column("key", String(), nullable=False),
    Column("request_digest", String(64), nullable=False),
    Column("state", String(), nullable=False),
    Column("status_code", Integer(), nullable=True),
    Column("headers", JSON(none_as_null=True), nullable=True),
    Column("body", LargeBinary(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("principal", "key"),
    _one_of("state", IDEMPOTENCY_STATES, "state"),
    Index(None, "expires_at"),
)

#: The history of each exception-queue item: who, what, why, when.
exception_actions = Table(
    "exception_actions",
    metadata,
    Column("seq", SeqInteger, primary_key=True, autoincrement=True),
    Column("exception_id", String(), nullable=False),
    Column("action", String(), nullable=False),
    Column("actor", String(), nullable=False),
    Column("role", String(), nullable=False),
    Column("reason", Text(), nullable=True),
    Column("at", UTCDateTime(), nullable=False),
    _one_of("action", EXCEPTION_ACTIONS, "action"),
    Index(None, "exception_id", "seq"),
)
