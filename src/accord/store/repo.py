"""Small repositories over one SQLAlchemy :class:`~sqlalchemy.Connection`.

Each repository is a thin, typed face on one or two tables. None of them
commits: the caller owns the transaction (``with engine.begin() as conn:``), so
that a record, its version, its xref links and an audit entry land together or
not at all.

Every read-modify-write is written to stay correct under concurrency on both
dialects without relying on isolation levels:

* inserts that may race use ``INSERT … ON CONFLICT DO NOTHING`` and look at the
  row count (the inbox, the effect ledger, xref links, deduplicated exceptions);
* updates that depend on what was read carry that read in their ``WHERE``
  (``version = :seen``, ``state IN (…)``) and a row count of zero means someone
  else got there first;
* the inbox is claimed with one ``UPDATE … RETURNING`` over a
  ``FOR UPDATE SKIP LOCKED`` selection, so two workers never share an event.

(With SQLite, Python's driver opens the transaction at the first write, so
these writes are also the point where the single writer lock is taken and
waited for, up to the busy timeout.)

Every timestamp comes from the repository's ``clock`` (timezone-aware UTC), so
tests can pin "now" and ages are exact.
"""

from __future__ import annotations

import builtins
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Row,
    Select,
    Table,
    and_,
    false,
    func,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import TextualSelect

from accord.domain.ids import new_id
from accord.domain.lifecycle import Lifecycle
from accord.errors import InvalidInput, RuleViolation, TransientError
from accord.store.audit import canonical_json, content_digest, json_document
from accord.store.db import is_sqlite_file, writer_lock
from accord.store.fast import (
    SQLITE_DATETIME,
    Prepared,
    db_time,
    json_strings,
    unsupported_dialect,
)
from accord.store.tables import (
    SQLITE_WAITING_AGAIN,
    EffectStatus,
    ExceptionState,
    InboxStatus,
    cursors,
    effects,
    exceptions,
    inbox,
    record_versions,
    records,
    xref,
)

__all__ = [
    "keys_in",
    "keyed_rows",
    "PutItem",
    "EFFECT_LIFECYCLE",
    "EXCEPTION_LIFECYCLE",
    "Clock",
    "Cursors",
    "EffectRecord",
    "Effects",
    "ExceptionItem",
    "Exceptions",
    "IdempotencyConflict",
    "Inbox",
    "InboxIntake",
    "InboxEvent",
    "NotFound",
    "PutResult",
    "Raised",
    "RecordVersion",
    "Records",
    "StaleVersion",
    "StoredRecord",
    "Xref",
    "XrefConflict",
    "XrefLink",
    "changed_fields",
    "utc_now",
]

# How often a conditional state change is retried when the row changed under it.
_MOVE_TRIES = 3

#: Where repositories get "now"; must return a timezone-aware datetime.
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


# --------------------------------------------------------------------------- errors


class StaleVersion(RuleViolation):
    """A write based on a version of a record that is no longer current.

    Not retryable as is: re-read the record, re-apply the change, write again.
    """

    def __init__(self, entity_type: str, id: str, *, expected: int, found: int | None) -> None:
        if found is None and expected == 0:
            message = (
                f"{entity_type} {id} was created by someone else at the same time; "
                "re-read it and apply the change again"
            )
        elif found is None:
            message = (
                f"{entity_type} {id} was changed by someone else while version {expected} "
                "was being replaced; re-read it and apply the change again"
            )
        else:
            message = (
                f"{entity_type} {id}: the change was based on version {expected}, but the "
                f"store holds version {found}; re-read it and apply the change again"
            )
        super().__init__(message)
        self.entity_type = entity_type
        self.id = id
        self.expected = expected
        self.found = found


class XrefConflict(RuleViolation):
    """A link that contradicts an existing one: an identity question for a person."""

    def __init__(self, message: str, *, existing: XrefLink) -> None:
        super().__init__(message)
        self.existing = existing


class IdempotencyConflict(InvalidInput):
    """The same idempotency key was used with a different request: a bug upstream."""

    def __init__(self, key: str, *, stored: str, given: str) -> None:
        super().__init__(
            f"request digest {given[:12]}… differs from the recorded {stored[:12]}…; "
            "an idempotency key must name exactly one request",
            record=key,
            field="request_digest",
        )
        self.key = key


class NotFound(InvalidInput):
    """The row a call refers to does not exist."""


# --------------------------------------------------------------------------- helpers


def keys_in(columns: Sequence[Any], keys: Iterable[Sequence[Any]]) -> ColumnElement[bool]:
    """``(c1, c2, …) IN keys`` in a form both databases answer from an index.

    SQLite scans the whole table for a row-value ``IN`` list, which makes every
    batch cost as much as the table is long; grouped by all but the last column
    (``c1 = ? AND c2 IN (…) OR …``) it searches the index instead, and
    PostgreSQL plans it as well as the row-value form.
    """
    *prefix, last = columns
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for key in keys:
        groups.setdefault(tuple(key[:-1]), []).append(key[-1])
    if not groups:
        return false()
    return or_(
        *(
            and_(
                *(column == value for column, value in zip(prefix, head, strict=True)),
                last.in_(tails),
            )
            for head, tails in groups.items()
        )
    )


_KEYED: dict[tuple[str, tuple[str, ...], str, bool], TextualSelect] = {}


def _keyed_statement(
    table: Table, key_columns: tuple[str, ...], dialect: str, lock: bool
) -> TextualSelect:
    """The one statement text of :func:`keyed_rows` for this table, key and dialect."""
    cache_key = (table.name, key_columns, dialect, lock)
    found = _KEYED.get(cache_key)
    if found is not None:
        return found
    columns = ", ".join(f"t.{column.name}" for column in table.c)
    if dialect == "sqlite":
        # the keys as one JSON array of arrays; SQLite walks it and searches the
        # table's index once per key
        on = " AND ".join(
            f"t.{name} = json_extract(k.value, '$[{i}]')" for i, name in enumerate(key_columns)
        )
        sql = f"SELECT {columns} FROM json_each(:keys) AS k JOIN {table.name} AS t ON {on}"
    elif dialect == "postgresql":
        arrays = ", ".join(f"CAST(:k{i} AS text[])" for i in range(len(key_columns)))
        names = ", ".join(f"k{i}" for i in range(len(key_columns)))
        on = " AND ".join(f"t.{name} = k.k{i}" for i, name in enumerate(key_columns))
        sql = (
            f"SELECT {columns} FROM unnest({arrays}) AS k({names})"
            f" JOIN {table.name} AS t ON {on}" + (" FOR UPDATE OF t" if lock else "")
        )
    else:
        raise unsupported_dialect(dialect)
    # built once per shape; two threads building it at once build the same statement
    typed = _KEYED[cache_key] = text(sql).columns(*table.c)
    return typed


def keyed_rows(
    conn: Connection,
    table: Table,
    key_columns: Sequence[str],
    keys: Iterable[Sequence[str]],
    *,
    lock: bool = False,
) -> list[Row[Any]]:
    """The rows of ``table`` whose ``key_columns`` equal one of ``keys``, in one
    statement whose text never changes (values typed as the table's columns).

    The hot path's look-ups of a batch's keys: :func:`keys_in` builds a new
    expression per call, which cost more than the search itself. Here the keys
    travel as one parameter — a JSON array on SQLite (``json_each``), one text
    array per key column on PostgreSQL (``unnest``) — and each key is one
    search of the table's index on both. ``lock`` takes the rows ``FOR
    UPDATE`` on PostgreSQL (SQLite's transactions lock the whole database).
    """
    names = tuple(key_columns)
    wanted = list(dict.fromkeys(tuple(key) for key in keys))  # a key twice: its rows once
    if not wanted:
        return []
    dialect = conn.dialect.name
    statement = _keyed_statement(table, names, dialect, lock)
    if dialect == "sqlite":
        params: dict[str, Any] = {"keys": "[" + ",".join(json_strings(key) for key in wanted) + "]"}
    else:
        params = {f"k{i}": [key[i] for key in wanted] for i in range(len(names))}
    return list(conn.execute(statement, params))


def _require_aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise InvalidInput("the clock returned a naive datetime; it must be timezone-aware")
    return now.astimezone(UTC)


def _dialect_insert(conn: Connection, table: Table) -> postgresql.Insert | sqlite.Insert:
    name = conn.dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise unsupported_dialect(name)


def _insert_new(conn: Connection, table: Table, values: Mapping[str, Any], *conflict: str) -> bool:
    """Insert unless a unique key is taken; True if this call inserted the row.

    With no ``conflict`` columns, a clash on *any* unique constraint is ignored.
    The answer comes from RETURNING, not the row count, which psycopg reports
    as -1 for inserts.
    """
    statement = (
        _dialect_insert(conn, table)
        .values(dict(values))
        .on_conflict_do_nothing(index_elements=list(conflict) or None)
        .returning(*table.primary_key.columns)
    )
    return conn.execute(statement).first() is not None


def changed_fields(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[str, ...]:
    """Top-level fields added, removed or changed, sorted.

    Values are compared as JSON, so ``1``, ``1.0`` and ``True`` — equal in
    Python — count as different, as they do for every system downstream.
    """
    keys = set(before) | set(after)
    return tuple(
        sorted(
            key
            for key in keys
            if key not in before or key not in after or _differs(before[key], after[key])
        )
    )


def _differs(a: Any, b: Any) -> bool:
    """Whether two JSON values differ as JSON (``1``, ``1.0`` and ``True`` do)."""
    kind = type(a)
    if kind is type(b) and (kind is str or kind is int or kind is bool or a is None):
        return bool(a != b)
    return canonical_json(a) != canonical_json(b)


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """The current version of a canonical record."""

    entity_type: str
    id: str
    version: int
    data: dict[str, Any]
    digest: str
    updated_by_system: str
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class PutItem:
    """One write of :meth:`Records.put_many`."""

    entity_type: str
    id: str
    data: Mapping[str, Any]
    system: str
    actor: str
    trace_id: str | None = None
    #: :func:`~accord.store.audit.canonical_json` of ``data``, when the caller
    #: already has it (it is then stored as it is, and ``data`` is taken as is).
    canonical: str | None = None
    #: SHA-256 (hex) of ``canonical``, when the caller already took it.
    digest: str | None = None


@dataclass(frozen=True, slots=True)
class RecordVersion:
    """One version of a record: who changed which fields, from where, when."""

    entity_type: str
    id: str
    version: int
    data: dict[str, Any]
    changed_fields: tuple[str, ...]
    system: str
    actor: str
    trace_id: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class PutResult:
    """What :meth:`Records.put` did."""

    #: The version now current (unchanged when nothing changed).
    version: int
    #: The fields this put changed; empty when the data was already stored.
    changed_fields: tuple[str, ...]
    created: bool

    @property
    def changed(self) -> bool:
        return bool(self.changed_fields)


_INSERT_RECORD = Prepared(
    "INSERT INTO records (entity_type, id, version, data, digest, updated_by_system, updated_at)"
    " VALUES ({p}, {p}, {p}, {json}, {p}, {p}, {p})"
)
_UPDATE_RECORD = Prepared(
    "UPDATE records SET version = {p}, data = {json}, digest = {p}, updated_by_system = {p},"
    " updated_at = {p} WHERE entity_type = {p} AND id = {p} AND version = {p}"
)
_INSERT_VERSION = Prepared(
    "INSERT INTO record_versions (entity_type, id, version, data, changed_fields, system, actor,"
    " trace_id, at) VALUES ({p}, {p}, {p}, {json}, {json}, {p}, {p}, {p}, {p})"
)


class Records:
    """Canonical records and their version history."""

    def __init__(self, conn: Connection, clock: Clock = utc_now) -> None:
        self._conn = conn
        self._clock = clock

    def get(self, entity_type: str, id: str) -> StoredRecord | None:
        row = self._conn.execute(
            select(records).where(records.c.entity_type == entity_type, records.c.id == id)
        ).one_or_none()
        return None if row is None else _stored(row)

    def put(
        self,
        entity_type: str,
        id: str,
        data: Mapping[str, Any],
        *,
        system: str,
        actor: str,
        expected_version: int | None = None,
        trace_id: str | None = None,
    ) -> PutResult:
        """Store ``data`` as the record's new version and say which fields changed.

        ``expected_version`` is the version the change was based on (``0`` for
        "must not exist yet"); if the store holds another, :class:`StaleVersion`
        is raised and nothing is written. Without it the write still refuses to
        overwrite a version that changed between the read and the write here.
        Storing exactly the current data writes nothing and bumps nothing, so a
        replayed or echoed change is harmless.
        """
        document = json_document(data)
        digest = content_digest(document)
        current = self.get(entity_type, id)
        found = 0 if current is None else current.version
        if expected_version is not None and expected_version != found:
            raise StaleVersion(entity_type, id, expected=expected_version, found=found)
        if current is not None and current.digest == digest:
            return PutResult(current.version, (), created=False)
        changed = changed_fields({} if current is None else current.data, document)
        now = _require_aware(self._clock())
        values = {
            "data": document,
            "digest": digest,
            "updated_by_system": system,
            "updated_at": now,
        }
        if current is None:
            version = 1
            row = {"entity_type": entity_type, "id": id, "version": version, **values}
            if not _insert_new(self._conn, records, row, "entity_type", "id"):
                raise StaleVersion(entity_type, id, expected=0, found=None)
        else:
            version = current.version + 1
            result = self._conn.execute(
                update(records)
                .where(
                    records.c.entity_type == entity_type,
                    records.c.id == id,
                    records.c.version == current.version,
                )
                .values(version=version, **values)
            )
            if result.rowcount != 1:
                raise StaleVersion(entity_type, id, expected=current.version, found=None)
        self._conn.execute(
            record_versions.insert().values(
                entity_type=entity_type,
                id=id,
                version=version,
                data=document,
                changed_fields=list(changed),
                system=system,
                actor=actor,
                trace_id=trace_id,
                at=now,
            )
        )
        return PutResult(version, changed, created=current is None)

    def get_many(
        self, keys: Iterable[tuple[str, str]], *, lock: bool = False
    ) -> dict[tuple[str, str], StoredRecord]:
        """Current versions of many records in one query (``lock``: FOR UPDATE)."""
        wanted = sorted(set(keys))
        rows = keyed_rows(self._conn, records, ("entity_type", "id"), wanted, lock=lock)
        return {(row.entity_type, row.id): _stored(row) for row in rows}

    def put_many(
        self,
        items: Sequence[PutItem],
        *,
        base: Mapping[tuple[str, str], StoredRecord] | None = None,
    ) -> list[PutResult]:
        """:meth:`put` for many records in a few statements (a batch of events).

        Items are applied in order, so the same record may appear several times
        and gets one version per real change. Call it in a transaction that
        already holds the write lock (SQLite) or with ``get_many(lock=True)``
        rows (PostgreSQL): the versions it bases on must not move underneath.
        ``base`` is what :meth:`get_many` returned for these records earlier in
        the same transaction (records missing from it do not exist yet); without
        it they are read here.
        """
        now = _require_aware(self._clock())
        if base is None:
            base = self.get_many(((i.entity_type, i.id) for i in items), lock=True)
        current: dict[tuple[str, str], StoredRecord] = dict(base)
        # the stored JSON text of every record written, by key
        texts: dict[tuple[str, str], str] = {}
        results: list[PutResult] = []
        at = db_time(self._conn, now)
        versions: list[tuple[Any, ...]] = []
        for item in items:
            key = (item.entity_type, item.id)
            if item.canonical is not None:
                text = item.canonical
                document = item.data if isinstance(item.data, dict) else dict(item.data)
                digest = item.digest or hashlib.sha256(text.encode()).hexdigest()
            else:
                document = json_document(item.data)
                text = canonical_json(document)
                digest = hashlib.sha256(text.encode()).hexdigest()
            before = current.get(key)
            if before is not None and before.digest == digest:
                results.append(PutResult(before.version, (), created=False))
                continue
            changed = changed_fields({} if before is None else before.data, document)
            version = 1 if before is None else before.version + 1
            current[key] = StoredRecord(
                item.entity_type, item.id, version, document, digest, item.system, now
            )
            texts[key] = text
            versions.append(
                (
                    item.entity_type,
                    item.id,
                    version,
                    text,
                    json_strings(changed),
                    item.system,
                    item.actor,
                    item.trace_id,
                    at,
                )
            )
            results.append(PutResult(version, changed, created=before is None))
        new_rows = []
        changed_rows = []
        for key, rec in current.items():
            old = base.get(key)
            if old is None:
                new_rows.append(
                    (
                        rec.entity_type,
                        rec.id,
                        rec.version,
                        texts[key],
                        rec.digest,
                        rec.updated_by_system,
                        at,
                    )
                )
            elif rec.version != old.version:
                changed_rows.append(
                    (
                        rec.version,
                        texts[key],
                        rec.digest,
                        rec.updated_by_system,
                        at,
                        rec.entity_type,
                        rec.id,
                        old.version,
                    )
                )
        _INSERT_RECORD.run_many(self._conn, new_rows)
        _UPDATE_RECORD.run_many(self._conn, changed_rows)
        _INSERT_VERSION.run_many(self._conn, versions)
        return results

    def history(self, entity_type: str, id: str) -> list[RecordVersion]:
        """Every version of the record, oldest first."""
        rows = self._conn.execute(
            select(record_versions)
            .where(record_versions.c.entity_type == entity_type, record_versions.c.id == id)
            .order_by(record_versions.c.version)
        )
        return [
            RecordVersion(
                entity_type=row.entity_type,
                id=row.id,
                version=row.version,
                data=row.data,
                changed_fields=tuple(row.changed_fields),
                system=row.system,
                actor=row.actor,
                trace_id=row.trace_id,
                at=row.at,
            )
            for row in rows
        ]


# --------------------------------------------------------------------------- xref


@dataclass(frozen=True, slots=True)
class XrefLink:
    """One canonical record's identity in one system."""

    entity_type: str
    canonical_id: str
    system: str
    external_object: str
    external_id: str
    etag: str | None
    last_synced: datetime | None
    #: Digest of what Accord last wrote there: an inbound change with the same
    #: digest is Accord's own write coming back (an echo), not news.
    last_written_digest: str | None


def _link(row: Row[Any]) -> XrefLink:
    return XrefLink(
        entity_type=row.entity_type,
        canonical_id=row.canonical_id,
        system=row.system,
        external_object=row.external_object,
        external_id=row.external_id,
        etag=row.etag,
        last_synced=row.last_synced,
        last_written_digest=row.last_written_digest,
    )


class Xref:
    """The cross-reference: which external object is which canonical record.

    A canonical record has at most one id per system, and an external object
    belongs to at most one canonical record; the database enforces both.
    """

    def __init__(self, conn: Connection, clock: Clock = utc_now) -> None:
        self._conn = conn
        self._clock = clock

    def link(
        self,
        entity_type: str,
        canonical_id: str,
        system: str,
        external_object: str,
        external_id: str,
        *,
        etag: str | None = None,
    ) -> XrefLink:
        """Record the link; linking again the same way only refreshes it.

        A refresh sets ``last_synced`` and, when given, the etag.

        A link that contradicts an existing one (the canonical record already
        has another id in that system, or the external object already belongs
        to another record) raises :class:`XrefConflict` — that is a duplicate or
        a merge, which is a person's decision, not the store's.
        """
        now = _require_aware(self._clock())
        wanted = XrefLink(
            entity_type=entity_type,
            canonical_id=canonical_id,
            system=system,
            external_object=external_object,
            external_id=external_id,
            etag=etag,
            last_synced=now,
            last_written_digest=None,
        )
        if _insert_new(self._conn, xref, asdict(wanted)):
            return wanted
        mine = self.lookup(entity_type, canonical_id, system)
        if mine is not None and (mine.external_object, mine.external_id) == (
            external_object,
            external_id,
        ):
            kept = mine.etag if etag is None else etag
            self.mark_synced(entity_type, canonical_id, system, etag=kept)
            return replace(mine, etag=kept, last_synced=now)
        if mine is not None:
            raise XrefConflict(
                f"{entity_type} {canonical_id} is already linked to {system} "
                f"{mine.external_object} {mine.external_id}, not {external_object} {external_id}",
                existing=mine,
            )
        theirs = self.by_external(system, external_object, external_id)
        if theirs is None:  # pragma: no cover - the clashing row went away meanwhile
            raise XrefConflict(
                f"{system} {external_object} {external_id} was linked concurrently; retry",
                existing=wanted,
            )
        raise XrefConflict(
            f"{system} {external_object} {external_id} is already linked to "
            f"{theirs.entity_type} {theirs.canonical_id}, not {entity_type} {canonical_id}",
            existing=theirs,
        )

    def lookup(self, entity_type: str, canonical_id: str, system: str) -> XrefLink | None:
        """The record's link in ``system``, if any."""
        row = self._conn.execute(
            select(xref).where(
                xref.c.entity_type == entity_type,
                xref.c.canonical_id == canonical_id,
                xref.c.system == system,
            )
        ).one_or_none()
        return None if row is None else _link(row)

    def by_external(self, system: str, external_object: str, external_id: str) -> XrefLink | None:
        """The link of an external object (what an inbound event refers to), if any."""
        row = self._conn.execute(
            select(xref).where(
                xref.c.system == system,
                xref.c.external_object == external_object,
                xref.c.external_id == external_id,
            )
        ).one_or_none()
        return None if row is None else _link(row)

    def links(self, entity_type: str, canonical_id: str) -> list[XrefLink]:
        """The record's links in every system, by system name."""
        rows = self._conn.execute(
            select(xref)
            .where(xref.c.entity_type == entity_type, xref.c.canonical_id == canonical_id)
            .order_by(xref.c.system)
        )
        return [_link(row) for row in rows]

    def mark_synced(
        self,
        entity_type: str,
        canonical_id: str,
        system: str,
        *,
        etag: str | None = None,
        written_digest: str | None = None,
    ) -> None:
        """Note a sync with ``system``: the etag seen, and what Accord wrote, if it wrote.

        ``etag`` replaces the stored one. ``written_digest`` is given after an
        outbound write and kept until the next one, for echo suppression.
        """
        values: dict[str, Any] = {"etag": etag, "last_synced": _require_aware(self._clock())}
        if written_digest is not None:
            values["last_written_digest"] = written_digest
        result = self._conn.execute(
            update(xref)
            .where(
                xref.c.entity_type == entity_type,
                xref.c.canonical_id == canonical_id,
                xref.c.system == system,
            )
            .values(**values)
        )
        if result.rowcount != 1:
            raise NotFound(f"{entity_type} {canonical_id} has no link in {system}")


# --------------------------------------------------------------------------- inbox


@dataclass(frozen=True, slots=True)
class InboxEvent:
    """One inbound vendor event."""

    seq: int
    system: str
    event_id: str
    event_type: str
    payload: dict[str, Any]
    status: InboxStatus
    attempts: int
    error: str | None
    received_at: datetime
    processed_at: datetime | None
    #: Until when a claim (lease) or a retry delay holds the event back.
    available_at: datetime | None
    trace_id: str | None


def _stored(row: Row[Any]) -> StoredRecord:
    """A ``records`` row as the record it holds."""
    return StoredRecord(
        entity_type=row.entity_type,
        id=row.id,
        version=row.version,
        data=row.data,
        digest=row.digest,
        updated_by_system=row.updated_by_system,
        updated_at=row.updated_at,
    )


def _event(row: Row[Any]) -> InboxEvent:
    return InboxEvent(
        seq=row.seq,
        system=row.system,
        event_id=row.event_id,
        event_type=row.event_type,
        payload=row.payload,
        status=InboxStatus(row.status),
        attempts=row.attempts,
        error=row.error,
        received_at=row.received_at,
        processed_at=row.processed_at,
        available_at=row.available_at,
        trace_id=row.trace_id,
    )


_INSERT_EVENT = (
    "INSERT INTO inbox (system, event_id, received_at, event_type, payload, status, attempts,"
    " trace_id) VALUES ({p}, {p}, {p}, {p}, {json}, {p}, 0, {p})"
    " ON CONFLICT (system, event_id) DO NOTHING"
)
_ACCEPT = Prepared(_INSERT_EVENT + " RETURNING seq")
#: :class:`InboxIntake`'s insert: without ``RETURNING``, so that in autocommit
#: mode the statement (and its transaction) is complete when execute returns.
_ACCEPT_ONE = Prepared(_INSERT_EVENT)


def _event_row(
    system: str,
    event_id: str,
    received_at: Any,
    event_type: str,
    payload: Mapping[str, Any],
    trace_id: str | None,
) -> tuple[Any, ...]:
    """The parameters of an inbox insert, the payload checked and written out."""
    if not isinstance(payload, Mapping):
        raise InvalidInput(f"expected a JSON object, got {type(payload).__name__}")
    return (
        system,
        event_id,
        received_at,
        event_type,
        canonical_json(payload),
        InboxStatus.PENDING.value,
        trace_id,
    )


def _claim_statement(by_system: bool) -> Prepared:
    """The claiming update of :meth:`Inbox.claim_seqs` on PostgreSQL: due events,
    oldest first, by the status index.

    SKIP LOCKED lets concurrent claimers pass over each other's rows.
    """
    system = " AND system = {p}" if by_system else ""
    return Prepared(
        "UPDATE inbox SET attempts = attempts + 1, available_at = {p}"
        " WHERE seq IN (SELECT seq FROM inbox"
        " WHERE status IN ('pending', 'failed')"
        " AND (available_at IS NULL OR available_at <= {p})" + system + " ORDER BY seq LIMIT {p}"
        " FOR UPDATE SKIP LOCKED) RETURNING seq, attempts"
    )


#: SQLite: events never claimed, which lie above the frontier (a rowid range).
_NEVER_CLAIMED = (
    "seq > coalesce((SELECT claimed_through FROM inbox_frontier WHERE id = 1), 0)"
    " AND status = 'pending' AND available_at IS NULL"
)


def _sqlite_claim_statement(by_system: bool) -> str:
    """The claiming update of :meth:`Inbox.claim_seqs` on SQLite: due events, oldest first.

    Two sources, each read in seq order and cut at the limit: events never
    claimed, by seq from above ``inbox_frontier`` (the status index has no
    entry for them), and events claimed before that are due again (an expired
    lease, a retry), by the partial status index. SQLite has no row locks and
    serialises claims on its writer lock. (A subquery, not a CTE: Python's
    sqlite3 opens the transaction only for statements that *start* with
    INSERT/UPDATE/DELETE, so a WITH … UPDATE would escape the caller's
    transaction.)
    """
    # ``+system``: SQLite is not to read a system's events by the (system,
    # event id) key, which holds every event, done or not
    system = " AND +system = ?" if by_system else ""
    return (
        "UPDATE inbox SET attempts = attempts + 1, available_at = ? WHERE seq IN ("
        f"SELECT seq FROM (SELECT seq FROM inbox WHERE {_NEVER_CLAIMED}"
        + system
        + " ORDER BY seq LIMIT ?)"
        " UNION ALL SELECT seq FROM (SELECT seq FROM inbox"
        f" WHERE {SQLITE_WAITING_AGAIN} AND available_at <= ?" + system + " ORDER BY seq LIMIT ?)"
        " ORDER BY seq LIMIT ?) RETURNING seq, attempts"
    )


#: Moves SQLite's frontier up to a claim's highest seq (never down).
_ADVANCE_FRONTIER = (
    "UPDATE inbox_frontier SET claimed_through = ? WHERE id = 1 AND claimed_through < ?"
)

#: The lowest seq waiting on SQLite: never claimed (above the frontier), or due again.
_SQLITE_FIRST_WAITING = (
    f"SELECT min(seq) FROM (SELECT seq FROM (SELECT seq FROM inbox WHERE {_NEVER_CLAIMED}"
    " ORDER BY seq LIMIT 1)"
    f" UNION ALL SELECT seq FROM (SELECT seq FROM inbox WHERE {SQLITE_WAITING_AGAIN}"
    " ORDER BY seq LIMIT 1))"
)


#: The claim of :meth:`Inbox.claim_seqs`, without and with a system to claim for.
_CLAIM = {False: _claim_statement(False), True: _claim_statement(True)}
_SQLITE_CLAIM = {False: _sqlite_claim_statement(False), True: _sqlite_claim_statement(True)}


class InboxIntake:
    """The intake of one process on embedded SQLite: one held connection, one statement.

    :meth:`Inbox.accept` inside ``engine.begin()`` spends more on checking a
    connection out of the pool and on SQLAlchemy's transaction and result
    objects than SQLite spends storing the row. SQLite takes one writer at a
    time anyway, so intake holds one driver connection in autocommit mode and
    sends one prepared insert under a lock: the insert is its own transaction,
    committed when the call returns (the same durability as ``begin()``), in
    one call into SQLite instead of three.

    Only for a SQLite file: :meth:`for_engine` gives ``None`` for PostgreSQL,
    where concurrent requests should use the pool, and for an in-memory
    database, whose connections cannot be shared between threads.
    """

    def __init__(self, engine: Engine, clock: Callable[[], datetime] = utc_now) -> None:
        self._engine = engine
        self._clock = clock
        # shared with the process's other writers to the file (a batch's
        # transaction): an insert arriving during one waits exactly until it
        # commits, not for SQLite's busy handler to wake
        self._lock = writer_lock(engine)
        self._raw: Any = None
        self._isolation: Any = None
        self._sql = _ACCEPT_ONE.text_for("sqlite")

    @classmethod
    def for_engine(cls, engine: Engine) -> InboxIntake | None:
        return cls(engine) if is_sqlite_file(engine.url) else None

    def accept(
        self,
        system: str,
        event_id: str,
        *,
        event_type: str,
        payload: Mapping[str, Any],
        trace_id: str | None = None,
    ) -> bool:
        """As :meth:`Inbox.accept`, committed when it returns."""
        received = _require_aware(self._clock()).strftime(SQLITE_DATETIME)
        params = _event_row(system, event_id, received, event_type, payload, trace_id)
        with self._lock:
            if self._raw is None:
                raw: Any = self._engine.raw_connection()
                self._isolation = raw.driver_connection.isolation_level
                raw.driver_connection.isolation_level = None  # each statement commits
                self._raw = raw
            try:
                # no row changed: the event was already stored (a redelivery)
                return bool(self._raw.driver_connection.execute(self._sql, params).rowcount == 1)
            except BaseException:
                self._discard()
                raise

    def _discard(self) -> None:
        raw, self._raw = self._raw, None
        if raw is not None:
            raw.invalidate()

    def close(self) -> None:
        """Give the connection back to the pool (the next accept takes it again)."""
        with self._lock:
            raw, self._raw = self._raw, None
            if raw is not None:
                raw.driver_connection.isolation_level = self._isolation
                raw.close()


def _waiting_by_system(dialect: str) -> Select[Any]:
    """:meth:`Inbox.waiting_by_system`'s query: per system, the count and the oldest
    arrival of pending or failed events, by index on both databases."""
    if dialect == "sqlite":
        arrived = select(inbox.c.system, inbox.c.received_at)
        events = union_all(
            arrived.where(text(_NEVER_CLAIMED)),
            arrived.where(text(SQLITE_WAITING_AGAIN)),
        ).subquery()
        system, received_at = events.c.system, events.c.received_at
        return select(system, func.count(), func.min(received_at)).group_by(system)
    return (
        select(inbox.c.system, func.count(), func.min(inbox.c.received_at))
        .where(inbox.c.status.in_([InboxStatus.PENDING.value, InboxStatus.FAILED.value]))
        .group_by(inbox.c.system)
    )


class Inbox:
    """Inbound events, stored once per (system, event id) before any processing.

    Vendors redeliver webhooks; :meth:`accept` returning False is the signal
    to acknowledge the delivery and do nothing else. Processing is in batches
    (:meth:`claim_batch`), because one workflow per event cannot keep up with
    high-volume streams; each claim is a lease, so a worker that dies leaves
    its events to be claimed again once the lease runs out.
    """

    def __init__(self, conn: Connection, clock: Clock = utc_now) -> None:
        self._conn = conn
        self._clock = clock

    def accept(
        self,
        system: str,
        event_id: str,
        *,
        event_type: str,
        payload: Mapping[str, Any],
        trace_id: str | None = None,
    ) -> bool:
        """Store the event; False if it was already stored (a redelivery).

        Race-safe: of any number of concurrent deliveries of one event, exactly
        one call returns True.
        """
        # The hot path of intake, so one prepared statement and no per-call SQL
        # building: a third of the cost of the same insert built with Core.
        received = db_time(self._conn, _require_aware(self._clock()))
        params = _event_row(system, event_id, received, event_type, payload, trace_id)
        return _ACCEPT.run(self._conn, params).first() is not None

    def accept_many(self, events: Iterable[Mapping[str, Any]]) -> int:
        """Store many events in one statement (backfills); redeliveries are skipped.

        Each mapping has ``system``, ``event_id``, ``event_type``, ``payload`` and
        optionally ``trace_id``. Returns how many were new.
        """
        now = _require_aware(self._clock())
        rows = [
            {
                "system": e["system"],
                "event_id": e["event_id"],
                "received_at": now,
                "event_type": e["event_type"],
                "payload": json_document(e["payload"]),
                "status": InboxStatus.PENDING.value,
                "attempts": 0,
                "trace_id": e.get("trace_id"),
            }
            for e in events
        ]
        if not rows:
            return 0
        statement = (
            _dialect_insert(self._conn, inbox)
            .on_conflict_do_nothing(index_elements=["system", "event_id"])
            .returning(inbox.c.seq)
        )
        return len(self._conn.execute(statement, rows).all())

    def get(self, system: str, event_id: str) -> InboxEvent | None:
        row = self._conn.execute(
            select(inbox).where(inbox.c.system == system, inbox.c.event_id == event_id)
        ).one_or_none()
        return None if row is None else _event(row)

    def claim_batch(
        self,
        limit: int = 100,
        *,
        system: str | None = None,
        lease: timedelta = timedelta(minutes=5),
    ) -> list[InboxEvent]:
        """Claim up to ``limit`` events that are due, oldest first, for ``lease``.

        Due means pending or failed and not held back (``available_at`` unset or
        past). Each claimed event's ``attempts`` goes up by one. Commit the
        claim before processing, then :meth:`mark` the outcome; events not
        marked in time are claimed again by the next caller.
        """
        seqs = [seq for seq, _ in self.claim_seqs(limit, system=system, lease=lease)]
        if not seqs:
            return []
        rows = self._conn.execute(select(inbox).where(inbox.c.seq.in_(seqs)).order_by(inbox.c.seq))
        return [_event(row) for row in rows]

    def claim_seqs(
        self,
        limit: int = 100,
        *,
        system: str | None = None,
        lease: timedelta = timedelta(minutes=5),
    ) -> list[tuple[int, int]]:
        """:meth:`claim_batch` answering only ``(seq, attempts)`` pairs, by seq.

        The batch's events are read again when they are applied, so a claim
        that only hands their numbers on need not read their payloads. The
        statement is prepared: the dispatcher claims once or twice per batch,
        and building it cost more than running it.
        """
        if limit < 1:
            raise InvalidInput("limit must be at least 1", field="limit")
        conn = self._conn
        now = _require_aware(self._clock())
        until = db_time(conn, now + lease)
        if conn.dialect.name == "sqlite":
            return self._claim_sqlite(until, db_time(conn, now), limit, system)
        params: tuple[Any, ...] = (until, db_time(conn, now))
        if system is not None:
            params += (system,)
        claimed: Iterable[Any] = _CLAIM[system is not None].run(conn, (*params, limit))
        return sorted((int(row[0]), int(row[1])) for row in claimed)

    def _claim_sqlite(
        self, until: str, now: str, limit: int, system: str | None
    ) -> list[tuple[int, int]]:
        """The claim on SQLite, moving ``inbox_frontier`` up in the same transaction.

        The claim takes the ``limit`` oldest due events, and an event never
        claimed is always due, so every such event below the highest seq taken
        is taken too: the frontier may move up to it. A claim for one system
        leaves the other systems' events behind and does not move it.
        """
        conn = self._conn
        only = () if system is None else (system,)
        params = (until, *only, limit, now, *only, limit, limit)
        claimed = sorted(
            (int(row[0]), int(row[1]))
            for row in conn.exec_driver_sql(_SQLITE_CLAIM[system is not None], params)
        )
        if claimed and system is None:
            highest = claimed[-1][0]
            conn.exec_driver_sql(_ADVANCE_FRONTIER, (highest, highest))
        return claimed

    def waiting_by_system(self) -> dict[str, tuple[int, datetime]]:
        """Per system, how many events are pending or failed and when the oldest
        arrived; by index on both databases (SQLite: the frontier and the partial
        index), not by reading every event ever received."""
        query = _waiting_by_system(self._conn.dialect.name)
        return {system: (int(count), oldest) for system, count, oldest in self._conn.execute(query)}

    def first_waiting(self) -> int | None:
        """The lowest seq of an event that is pending or failed, or ``None``: cheap,
        by index (SQLite: by the frontier and the partial index)."""
        conn = self._conn
        if conn.dialect.name == "sqlite":
            found = conn.exec_driver_sql(_SQLITE_FIRST_WAITING).scalar()
            return None if found is None else int(found)
        waiting = [
            conn.execute(select(func.min(inbox.c.seq)).where(inbox.c.status == status)).scalar()
            for status in (InboxStatus.PENDING.value, InboxStatus.FAILED.value)
        ]
        seqs = [int(seq) for seq in waiting if seq is not None]
        return min(seqs) if seqs else None

    def mark(
        self,
        seqs: int | Iterable[int],
        status: InboxStatus,
        *,
        error: str | None = None,
        retry_after: timedelta = timedelta(0),
    ) -> int:
        """Record the outcome of processing; returns the number of events marked.

        DONE and DEAD are final (``processed_at`` is set). FAILED holds the
        event back for ``retry_after`` and then lets it be claimed again.
        PENDING releases a claim at once, or re-queues a dead event after a fix.
        """
        chosen = [seqs] if isinstance(seqs, int) else list(seqs)
        if not chosen:
            return 0
        now = _require_aware(self._clock())
        values: dict[str, Any] = {"status": status.value, "error": error}
        if status in (InboxStatus.DONE, InboxStatus.DEAD):
            values.update(processed_at=now, available_at=None)
        elif status is InboxStatus.FAILED:
            values.update(processed_at=None, available_at=now + retry_after)
        else:
            # due at once; an event that has been claimed never goes back to
            # having no available_at, which marks events never claimed
            values.update(processed_at=None, available_at=now)
        result = self._conn.execute(update(inbox).where(inbox.c.seq.in_(chosen)).values(values))
        return result.rowcount

    def counts(self) -> dict[InboxStatus, int]:
        """How many events are in each status (every status present, zero or not)."""
        rows = self._conn.execute(
            select(inbox.c.status, func.count()).group_by(inbox.c.status)
        ).all()
        found = {InboxStatus(status): int(count) for status, count in rows}
        return {status: found.get(status, 0) for status in InboxStatus}


# --------------------------------------------------------------------------- effects

#: Which ledger moves are possible. DONE is final; FAILED may still end DONE
#: when the effect is replayed after the cause is fixed.
EFFECT_LIFECYCLE: Lifecycle[EffectStatus] = Lifecycle(
    "Effect",
    {
        EffectStatus.INTENT: {EffectStatus.DONE, EffectStatus.FAILED, EffectStatus.DOUBT},
        EffectStatus.DOUBT: {EffectStatus.DONE, EffectStatus.FAILED, EffectStatus.DOUBT},
        EffectStatus.FAILED: {EffectStatus.DONE, EffectStatus.FAILED, EffectStatus.DOUBT},
        EffectStatus.DONE: set(),
    },
)


@dataclass(frozen=True, slots=True)
class EffectRecord:
    """The ledger's entry for one outbound call."""

    idempotency_key: str
    system: str
    operation: str
    request_digest: str
    status: EffectStatus
    external_id: str | None
    result: dict[str, Any] | None
    attempts: int
    error: str | None
    created_at: datetime
    updated_at: datetime
    trace_id: str | None


def _effect(row: Row[Any]) -> EffectRecord:
    return EffectRecord(
        idempotency_key=row.idempotency_key,
        system=row.system,
        operation=row.operation,
        request_digest=row.request_digest,
        status=EffectStatus(row.status),
        external_id=row.external_id,
        result=row.result,
        attempts=row.attempts,
        error=row.error,
        created_at=row.created_at,
        updated_at=row.updated_at,
        trace_id=row.trace_id,
    )


class Effects:
    """The effect ledger: every outbound call, by idempotency key.

    The executor calls :meth:`intend` and commits *before* calling the vendor,
    :meth:`attempt` per try, then :meth:`complete`, :meth:`fail` or
    :meth:`doubt`. An entry found in INTENT or DOUBT on a later run means an
    earlier attempt may have reached the vendor: look it up before resending.
    """

    def __init__(self, conn: Connection, clock: Clock = utc_now) -> None:
        self._conn = conn
        self._clock = clock

    def get(self, key: str) -> EffectRecord | None:
        row = self._conn.execute(
            select(effects).where(effects.c.idempotency_key == key)
        ).one_or_none()
        return None if row is None else _effect(row)

    def intend(
        self,
        key: str,
        *,
        system: str,
        operation: str,
        request_digest: str,
        trace_id: str | None = None,
    ) -> EffectRecord:
        """Record the intent (once) and return the entry as it now stands.

        An existing entry is returned unchanged — its status tells the caller
        what happened last time — unless it was for another request, which
        raises :class:`IdempotencyConflict`.
        """
        now = _require_aware(self._clock())
        _insert_new(
            self._conn,
            effects,
            {
                "idempotency_key": key,
                "system": system,
                "operation": operation,
                "request_digest": request_digest,
                "status": EffectStatus.INTENT.value,
                "attempts": 0,
                "created_at": now,
                "updated_at": now,
                "trace_id": trace_id,
            },
            "idempotency_key",
        )
        entry = self._require(key)
        if entry.request_digest != request_digest:
            raise IdempotencyConflict(key, stored=entry.request_digest, given=request_digest)
        return entry

    def attempt(self, key: str) -> int:
        """Count one more try at the vendor; returns the number of tries so far."""
        attempts = self._conn.execute(
            update(effects)
            .where(effects.c.idempotency_key == key)
            .values(attempts=effects.c.attempts + 1, updated_at=_require_aware(self._clock()))
            .returning(effects.c.attempts)
        ).scalar_one_or_none()
        if attempts is None:
            raise NotFound(f"no effect with idempotency key {key}")
        return int(attempts)

    def complete(
        self,
        key: str,
        *,
        external_id: str | None = None,
        result: Mapping[str, Any] | None = None,
    ) -> EffectRecord:
        """The vendor confirmed the effect. Completing a DONE entry again keeps the first result."""
        values = {
            "external_id": external_id,
            "result": None if result is None else json_document(result),
            "error": None,
        }
        return self._move(key, EffectStatus.DONE, values)

    def fail(self, key: str, error: str) -> EffectRecord:
        """The vendor refused the effect, or retries ran out."""
        return self._move(key, EffectStatus.FAILED, {"error": error})

    def doubt(self, key: str, error: str) -> EffectRecord:
        """The call was sent but its outcome is unknown (timeout, lost response)."""
        return self._move(key, EffectStatus.DOUBT, {"error": error})

    def unsettled(self, limit: int = 100) -> list[EffectRecord]:
        """Entries in INTENT or DOUBT, oldest first: what a recovery sweep must resolve."""
        rows = self._conn.execute(
            select(effects)
            .where(effects.c.status.in_([EffectStatus.INTENT.value, EffectStatus.DOUBT.value]))
            .order_by(effects.c.created_at, effects.c.idempotency_key)
            .limit(limit)
        )
        return [_effect(row) for row in rows]

    def _require(self, key: str) -> EffectRecord:
        entry = self.get(key)
        if entry is None:
            raise NotFound(f"no effect with idempotency key {key}")
        return entry

    def _move(self, key: str, target: EffectStatus, values: Mapping[str, Any]) -> EffectRecord:
        sources = [s.value for s in EffectStatus if EFFECT_LIFECYCLE.allows(s, target)]
        for _ in range(_MOVE_TRIES):
            result = self._conn.execute(
                update(effects)
                .where(effects.c.idempotency_key == key, effects.c.status.in_(sources))
                .values(status=target.value, updated_at=_require_aware(self._clock()), **values)
            )
            entry = self._require(key)
            if result.rowcount == 1:
                return entry
            if entry.status is EffectStatus.DONE and target is EffectStatus.DONE:
                return entry  # a replayed completion: the first result stands
            # Raises unless the status changed under us to one that allows the move.
            EFFECT_LIFECYCLE.advance(entry.status, target)
        raise TransientError(f"effect {key} kept changing while moving to {target}; retry")


# --------------------------------------------------------------------------- exceptions

#: Which moves an exception-queue item may make. RESOLVED and IGNORED are final.
EXCEPTION_LIFECYCLE: Lifecycle[ExceptionState] = Lifecycle(
    "Exception item",
    {
        ExceptionState.OPEN: {
            ExceptionState.ASSIGNED,
            ExceptionState.RESOLVED,
            ExceptionState.IGNORED,
        },
        ExceptionState.ASSIGNED: {
            ExceptionState.ASSIGNED,
            ExceptionState.RESOLVED,
            ExceptionState.IGNORED,
        },
        ExceptionState.RESOLVED: set(),
        ExceptionState.IGNORED: set(),
    },
)


@dataclass(frozen=True, slots=True)
class ExceptionItem:
    """An item of the exception queue, with its age when it was read."""

    id: str
    type: str
    role: str
    state: ExceptionState
    summary: str
    context: dict[str, Any]
    assignee: str | None
    resolution: str | None
    created_at: datetime
    updated_at: datetime
    trace_id: str | None
    dedupe_key: str | None
    #: How long the item has existed, as of the read.
    age: timedelta


@dataclass(frozen=True, slots=True)
class Raised:
    """What :meth:`Exceptions.raise_` did."""

    id: str
    #: False when an item with the same dedupe key was already there.
    created: bool


class Exceptions:
    """The exception queue: problems a person must decide, owned by a role.

    ``dedupe_key`` keeps a recurring problem (the same conflict reported by
    every poll) to one item. Resolving an item frees its key, so the problem
    coming back opens a new item; ignoring keeps the key, so an ignored problem
    stays quiet.
    """

    def __init__(self, conn: Connection, clock: Clock = utc_now) -> None:
        self._conn = conn
        self._clock = clock

    def raise_(
        self,
        type: str,
        *,
        role: str,
        summary: str,
        context: Mapping[str, Any] | None = None,
        dedupe_key: str | None = None,
        trace_id: str | None = None,
    ) -> Raised:
        """Open an item, or return the existing one with the same ``dedupe_key``."""
        now = _require_aware(self._clock())
        item_id = new_id()
        values = {
            "id": item_id,
            "type": type,
            "role": role,
            "state": ExceptionState.OPEN.value,
            "context": json_document(context),
            "summary": summary,
            "created_at": now,
            "updated_at": now,
            "trace_id": trace_id,
            "dedupe_key": dedupe_key,
        }
        if dedupe_key is None:
            self._conn.execute(exceptions.insert().values(values))
            return Raised(item_id, created=True)
        if _insert_new(self._conn, exceptions, values, "dedupe_key"):
            return Raised(item_id, created=True)
        existing = self._conn.execute(
            select(exceptions.c.id).where(exceptions.c.dedupe_key == dedupe_key)
        ).scalar_one()
        return Raised(str(existing), created=False)

    def get(self, id: str) -> ExceptionItem | None:
        row = self._conn.execute(select(exceptions).where(exceptions.c.id == id)).one_or_none()
        return None if row is None else self._item(row, _require_aware(self._clock()))

    def assign(self, id: str, assignee: str) -> ExceptionItem:
        """Give the item to a person (again, if it was already assigned)."""
        return self._move(id, ExceptionState.ASSIGNED, {"assignee": assignee})

    def resolve(self, id: str, resolution: str) -> ExceptionItem:
        """Close the item with what was done; its dedupe key is freed."""
        return self._move(
            id, ExceptionState.RESOLVED, {"resolution": resolution, "dedupe_key": None}
        )

    def ignore(self, id: str, reason: str) -> ExceptionItem:
        """Close the item as accepted; its dedupe key keeps recurrences quiet."""
        return self._move(id, ExceptionState.IGNORED, {"resolution": reason})

    def list(
        self,
        role: str | None = None,
        state: ExceptionState | Iterable[ExceptionState] | None = None,
        *,
        type: str | None = None,
        limit: int | None = None,
    ) -> builtins.list[ExceptionItem]:
        """Items oldest first, filtered by role, state(s) and type, each with its age."""
        query = select(exceptions)
        if role is not None:
            query = query.where(exceptions.c.role == role)
        if state is not None:
            states = [state] if isinstance(state, ExceptionState) else builtins.list(state)
            query = query.where(exceptions.c.state.in_([s.value for s in states]))
        if type is not None:
            query = query.where(exceptions.c.type == type)
        query = query.order_by(exceptions.c.created_at, exceptions.c.id)
        if limit is not None:
            query = query.limit(limit)
        now = _require_aware(self._clock())
        return [self._item(row, now) for row in self._conn.execute(query)]

    @staticmethod
    def _item(row: Row[Any], now: datetime) -> ExceptionItem:
        return ExceptionItem(
            id=row.id,
            type=row.type,
            role=row.role,
            state=ExceptionState(row.state),
            summary=row.summary,
            context=row.context,
            assignee=row.assignee,
            resolution=row.resolution,
            created_at=row.created_at,
            updated_at=row.updated_at,
            trace_id=row.trace_id,
            dedupe_key=row.dedupe_key,
            age=max(now - row.created_at, timedelta(0)),
        )

    def _move(self, id: str, target: ExceptionState, values: Mapping[str, Any]) -> ExceptionItem:
        sources = [s.value for s in ExceptionState if EXCEPTION_LIFECYCLE.allows(s, target)]
        for _ in range(_MOVE_TRIES):
            result = self._conn.execute(
                update(exceptions)
                .where(exceptions.c.id == id, exceptions.c.state.in_(sources))
                .values(state=target.value, updated_at=_require_aware(self._clock()), **values)
            )
            item = self.get(id)
            if item is None:
                raise NotFound(f"no exception item {id}")
            if result.rowcount == 1:
                return item
            # Raises unless the state changed under us to one that allows the move.
            EXCEPTION_LIFECYCLE.advance(item.state, target)
        raise TransientError(f"exception item {id} kept changing while moving to {target}; retry")


# --------------------------------------------------------------------------- cursors


class Cursors:
    """How far each stream of each system has been read (poll connectors)."""

    def __init__(self, conn: Connection, clock: Clock = utc_now) -> None:
        self._conn = conn
        self._clock = clock

    def get(self, system: str, stream: str) -> str | None:
        value = self._conn.execute(
            select(cursors.c.value).where(cursors.c.system == system, cursors.c.stream == stream)
        ).scalar_one_or_none()
        return None if value is None else str(value)

    def set(self, system: str, stream: str, value: str) -> None:
        """Store the cursor; commit it with the events read up to it, not before."""
        statement = _dialect_insert(self._conn, cursors).values(
            system=system, stream=stream, value=value, updated_at=_require_aware(self._clock())
        )
        self._conn.execute(
            statement.on_conflict_do_update(
                index_elements=["system", "stream"],
                set_={
                    "value": statement.excluded.value,
                    "updated_at": statement.excluded.updated_at,
                },
            )
        )
