"""The store's schema, as SQLAlchemy Core tables.

This module is the *current* picture of the schema; the Alembic revisions in
``migrations/versions`` are how a database gets there, and a test checks that
the two agree on SQLite and PostgreSQL. The same tables serve both dialects, so
only portable types are used:

* identifiers and states are ``VARCHAR`` without a length (PostgreSQL would
  enforce a length that SQLite ignores, and the two must behave alike);
* states are strings guarded by ``CHECK`` constraints rather than native enums,
  which PostgreSQL could only change with awkward migrations;
* documents are ``JSON``; money inside them is integer minor units, never a
  float or SQLite's lossy ``Numeric``;
* every timestamp is :class:`UTCDateTime`: timezone-aware UTC in Python,
  ``timestamptz`` on PostgreSQL and a sortable UTC text on SQLite (which has no
  time zones and would otherwise hand back naive datetimes).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.types import TypeDecorator

__all__ = [
    "GENESIS_HASH",
    "EffectStatus",
    "ExceptionState",
    "InboxStatus",
    "NAMING_CONVENTION",
    "SQLITE_WAITING_AGAIN",
    "SeqInteger",
    "UTCDateTime",
    "audit_head",
    "audit_log",
    "cursors",
    "echo_records",
    "effects",
    "exceptions",
    "inbox",
    "inbox_frontier",
    "metadata",
    "record_versions",
    "records",
    "xref",
]

#: What Accord last wrote to, and last saw in, each system per field: the echo
#: memory that tells Accord's own writes coming back from real edits.
#: Defined below the other tables; see :data:`echo_records`.

#: Constraint names are fixed so that migrations can refer to them by name and
#: both dialects carry the same names.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: The ``prev_hash`` of the first audit entry, and the head hash of an empty log.
GENESIS_HASH = "0" * 64

metadata = MetaData(naming_convention=NAMING_CONVENTION)

#: A 64-bit key that is still SQLite's ``INTEGER PRIMARY KEY`` (the rowid alias),
#: because only that column type auto-increments there.
SeqInteger = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC on the Python side.

    A naive datetime is refused on the way in: guessing its zone is how audit
    trails end up an hour off. On SQLite the value is stored as UTC text
    (microseconds included, so it sorts and round-trips exactly); on PostgreSQL
    as ``timestamptz``.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} refused: pass an aware UTC time")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _one_of(column: str, values: tuple[str, ...], name: str) -> CheckConstraint:
    allowed = ", ".join(f"'{value}'" for value in values)
    return CheckConstraint(f"{column} IN ({allowed})", name=name)


class InboxStatus(StrEnum):
    """Where an inbound event is in its processing."""

    PENDING = "pending"  #: stored, not yet processed (or claimed under a lease)
    DONE = "done"  #: processed; a redelivery is acknowledged and ignored
    FAILED = "failed"  #: the last attempt failed; it will be claimed again
    DEAD = "dead"  #: given up on; waits for a person and a replay


class EffectStatus(StrEnum):
    """What the ledger knows about an outbound call."""

    INTENT = "intent"  #: about to be sent; after a crash, treat like DOUBT
    DONE = "done"  #: the vendor confirmed it; the result is kept
    FAILED = "failed"  #: the vendor refused it, or retries ran out
    DOUBT = "doubt"  #: sent, outcome unknown (lost response): look up before resending


class ExceptionState(StrEnum):
    """The life of an item in the exception queue."""

    OPEN = "open"
    ASSIGNED = "assigned"
    RESOLVED = "resolved"
    IGNORED = "ignored"


def _values(enum: type[StrEnum]) -> tuple[str, ...]:
    return tuple(member.value for member in enum)


#: The current version of each canonical record: one row per record.
records = Table(
    "records",
    metadata,
    Column("entity_type", String(), nullable=False),
    Column("id", String(), nullable=False),
    Column("version", Integer(), nullable=False),
    Column("data", JSON(), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("updated_by_system", String(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("entity_type", "id"),
    CheckConstraint("version >= 1", name="version_positive"),
)

#: Every version of every record: who changed which fields, from which system, when.
record_versions = Table(
    "record_versions",
    metadata,
    Column("entity_type", String(), nullable=False),
    Column("id", String(), nullable=False),
    Column("version", Integer(), nullable=False),
    Column("data", JSON(), nullable=False),
    Column("changed_fields", JSON(), nullable=False),
    Column("system", String(), nullable=False),
    Column("actor", String(), nullable=False),
    Column("trace_id", String(), nullable=True),
    Column("at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("entity_type", "id", "version"),
    ForeignKeyConstraint(["entity_type", "id"], ["records.entity_type", "records.id"]),
    CheckConstraint("version >= 1", name="version_positive"),
)

#: The cross-reference: each canonical record's id in every connected system.
xref = Table(
    "xref",
    metadata,
    Column("entity_type", String(), nullable=False),
    Column("canonical_id", String(), nullable=False),
    Column("system", String(), nullable=False),
    Column("external_object", String(), nullable=False),
    Column("external_id", String(), nullable=False),
    Column("etag", String(), nullable=True),
    Column("last_synced", UTCDateTime(), nullable=True),
    Column("last_written_digest", String(64), nullable=True),
    PrimaryKeyConstraint("entity_type", "canonical_id", "system"),
    UniqueConstraint("system", "external_object", "external_id"),
)

#: The events the SQLite status index holds: claimed before, and waiting again.
SQLITE_WAITING_AGAIN = "status IN ('pending', 'failed') AND available_at IS NOT NULL"

#: Inbound vendor events, stored once per (system, event id) before processing.
#: ``available_at`` is the lease: a claimed event is skipped until it passes, so
#: a worker that dies mid-batch releases its events by simply not finishing.
inbox = Table(
    "inbox",
    metadata,
    Column("seq", SeqInteger, primary_key=True, autoincrement=True),
    Column("system", String(), nullable=False),
    Column("event_id", String(), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("event_type", String(), nullable=False),
    Column("payload", JSON(), nullable=False),
    Column("status", String(), nullable=False),
    Column("attempts", Integer(), nullable=False),
    Column("error", Text(), nullable=True),
    Column("processed_at", UTCDateTime(), nullable=True),
    Column("available_at", UTCDateTime(), nullable=True),
    Column("trace_id", String(), nullable=True),
    # What processing produced (effect keys, canonical changes), written in the
    # same transaction that marks the event done, so a re-run step finds them.
    Column("outcome", JSON(none_as_null=True), nullable=True),
    UniqueConstraint("system", "event_id"),
    _one_of("status", _values(InboxStatus), "status"),
    CheckConstraint("attempts >= 0", name="attempts_not_negative"),
    # On SQLite the index holds only events that have been claimed and wait
    # again (a lease, a retry): intake adds no entry to it, one page fewer in
    # each intake commit, and an event that is done leaves it. Events never
    # claimed lie above ``inbox_frontier`` and are found by their seq.
    # PostgreSQL, where concurrent intakes commit their seqs out of order,
    # indexes every event.
    Index(None, "status", "seq", sqlite_where=text(SQLITE_WAITING_AGAIN)),
    # A seq is never reused, so a batch named by its seqs (a workflow id) always
    # means the same events: PostgreSQL's sequence never hands a number out
    # twice; SQLite gives the highest seq plus one, and a trigger (migration
    # 0008) refuses to delete the newest event. AUTOINCREMENT would do the
    # same at the cost of one more page written by every intake commit.
)

#: SQLite: every event up to ``claimed_through`` has been claimed at least once
#: (or was marked without a claim). Events never claimed, which intake stores
#: with ``status = 'pending'`` and no ``available_at``, all lie above it: a
#: claim takes the oldest events, and SQLite numbers a new event above every
#: stored one. A claim finds them from here by seq, and moves the frontier to
#: the highest seq it took, in its own transaction. PostgreSQL, whose intakes
#: may commit a lower seq after a higher one, finds them by the status index and
#: leaves this row alone.
inbox_frontier = Table(
    "inbox_frontier",
    metadata,
    Column("id", Integer(), nullable=False, autoincrement=False),
    Column("claimed_through", SeqInteger, nullable=False),
    PrimaryKeyConstraint("id"),
    CheckConstraint("id = 1", name="single_row"),
)

#: The effect ledger: each outbound call, keyed by its idempotency key.
effects = Table(
    "effects",
    metadata,
    Column("idempotency_key", String(), nullable=False),
    Column("system", String(), nullable=False),
    Column("operation", String(), nullable=False),
    Column("request_digest", String(), nullable=False),
    Column("status", String(), nullable=False),
    Column("external_id", String(), nullable=True),
    Column("result", JSON(none_as_null=True), nullable=True),
    Column("attempts", Integer(), nullable=False),
    Column("error", Text(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("trace_id", String(), nullable=True),
    # The request itself, recorded with the intent, so that whichever worker
    # picks the effect up (or replays it) sends exactly what was decided.
    Column("request", JSON(none_as_null=True), nullable=True),
    PrimaryKeyConstraint("idempotency_key"),
    _one_of("status", _values(EffectStatus), "status"),
    CheckConstraint("attempts >= 0", name="attempts_not_negative"),
    Index(None, "status"),
)

#: The exception queue: work a person must look at, owned by a role.
exceptions = Table(
    "exceptions",
    metadata,
    Column("id", String(), nullable=False),
    Column("type", String(), nullable=False),
    Column("role", String(), nullable=False),
    Column("state", String(), nullable=False),
    Column("context", JSON(), nullable=False),
    Column("summary", Text(), nullable=False),
    Column("assignee", String(), nullable=True),
    Column("resolution", Text(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("trace_id", String(), nullable=True),
    Column("dedupe_key", String(), nullable=True),
    PrimaryKeyConstraint("id"),
    UniqueConstraint("dedupe_key"),
    _one_of("state", _values(ExceptionState), "state"),
    Index(None, "role", "state"),
    Index(None, "state", "created_at"),
)

#: The append-only, hash-chained audit log.
audit_log = Table(
    "audit_log",
    metadata,
    # INTEGER on SQLite: the key is then the rowid, not an index beside the table
    Column("seq", SeqInteger, nullable=False, autoincrement=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("actor", String(), nullable=False),
    Column("action", String(), nullable=False),
    Column("subject", String(), nullable=False),
    Column("data", JSON(), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    PrimaryKeyConstraint("seq"),
)

#: The anchor of the audit chain: one row holding the count and the last hash,
#: updated in the same transaction as each append, so that cutting entries off
#: the end of the log (which leaves a valid shorter chain) is still detected.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer(), nullable=False, autoincrement=False),
    Column("count", BigInteger(), nullable=False),
    Column("head_hash", String(64), nullable=False),
    PrimaryKeyConstraint("id"),
    CheckConstraint("id = 1", name="single_row"),
    CheckConstraint("count >= 0", name="count_not_negative"),
)

#: Poll cursors: how far each stream of each system has been read.
cursors = Table(
    "cursors",
    metadata,
    Column("system", String(), nullable=False),
    Column("stream", String(), nullable=False),
    Column("value", Text(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("system", "stream"),
)

#: Echo memory, one row per canonical record: for each system and field, the
#: digest Accord wrote that has not come back yet and the digest the system was
#: last seen holding, as ``{"system": {"field": [pending_echo, last_seen]}}``.
#: One row per record rather than per field: a batch reads and writes the echo
#: memory of its records in one indexed row each.
echo_records = Table(
    "echo_records",
    metadata,
    Column("entity_type", String(), nullable=False),
    Column("entity_id", String(), nullable=False),
    Column("state", JSON(), nullable=False),
    PrimaryKeyConstraint("entity_type", "entity_id"),
)
