"""From an inbox event to canonical records and planned effects, exactly once.

:meth:`Pipeline.apply_event` is one database transaction per event: map the
vendor payload to canonical upserts, resolve each to its canonical id through
the xref, let the ownership policy decide which fields apply (non-owner changes
become ``ownership_conflict`` exceptions, Accord's own echoes are dropped),
write the new version with its audit entry, and record the outbound effects as
intents in the ledger — in the same transaction that marks the event done.
Either all of that happens or none of it, so a crash at any point leaves the
event to be processed again, never half-applied.

:meth:`Pipeline.run_effects` then performs the recorded intents through the
:class:`~accord.runtime.effects.EffectExecutor`. A poison event or an effect
that keeps failing is dead-lettered with its reason as an exception, and never
blocks the other events of its batch.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

import structlog
from sqlalchemy import Connection, Engine, Table, select, update
from sqlalchemy.dialects import postgresql, sqlite

from accord.domain.ids import new_id
from accord.errors import AccordError, InvalidInput, RuleViolation, TransientError
from accord.events.envelope import CanonicalChange
from accord.events.stream import EventStream
from accord.ownership import (
    EchoKey,
    EchoMemory,
    FieldSync,
    OwnershipPolicy,
    decide,
    outbound,
    record_inbound,
    record_outbound,
)
from accord.runtime.effects import (
    Effect,
    EffectExecutor,
    EffectFailed,
    EffectOutcome,
    LedgerEntry,
    ordered_effect_key,
    request_json,
)
from accord.store import (
    Effects,
    Exceptions,
    Inbox,
    InboxIntake,
    PutItem,
    Records,
    append,
    append_many,
)
from accord.store.audit import CanonicalText, canonical_json
from accord.store.db import write_transaction
from accord.store.fast import Prepared, db_time, json_strings
from accord.store.repo import keyed_rows, keys_in, utc_now
from accord.store.tables import (
    EffectStatus,
    InboxStatus,
    echo_records,
    effects,
    inbox,
    record_versions,
    xref,
)
from accord.tracing import record_spans, span_in_trace, tracer

__all__ = [
    "CanonicalUpsert",
    "Handler",
    "InboundEvent",
    "Pipeline",
    "Route",
    "SqlLedger",
    "passthrough",
]

log = structlog.get_logger("accord.pipeline")

#: Which role's queue an ownership conflict goes to, by the owning system's role.
ROLE_OF_SYSTEM_ROLE = {"crm": "sales_ops", "erp": "finance", "billing": "finance", "psa": "pmo"}
DEAD_LETTER = "dead_letter"


@dataclass(frozen=True, slots=True)
class InboundEvent:
    seq: int
    system: str
    event_id: str
    event_type: str
    payload: Mapping[str, Any]
    trace_id: str | None = None


@dataclass(frozen=True, slots=True)
class CanonicalUpsert:
    """A vendor's view of one canonical record: its external key and the fields it sent."""

    entity_type: str
    external_object: str
    external_id: str
    fields: Mapping[str, Any]


#: Maps one inbound event to canonical upserts; raises InvalidInput for a poison event.
Handler = Callable[[InboundEvent], Sequence[CanonicalUpsert]]


@dataclass(frozen=True, slots=True)
class Route:
    """Send changes of ``entity_type`` to ``target`` as ``operation``."""

    entity_type: str
    target: str
    operation: str


def passthrough(event: InboundEvent) -> Sequence[CanonicalUpsert]:
    """The generic mapping: the payload already names the canonical record.

    ``{"entity_type": "account", "external_object": "Account", "external_id":
    "001…", "fields": {...}}`` — used by the stand-in vendors and benchmarks;
    real connectors register their own mapping.
    """
    payload = event.payload
    record = f"inbox[{event.system}:{event.event_id}]"
    for key in ("entity_type", "external_object", "external_id", "fields"):
        if key not in payload:
            raise InvalidInput(f"missing {key!r}", record=record, field=key)
    fields = payload["fields"]
    if not isinstance(fields, Mapping):
        raise InvalidInput("must be an object", record=record, field="fields")
    return [
        CanonicalUpsert(
            str(payload["entity_type"]),
            str(payload["external_object"]),
            str(payload["external_id"]),
            fields,
        )
    ]


class BulkEcho(EchoMemory):
    """Echo memory for a batch: one row per record, loaded in one query, written
    back in one statement.

    A record's row holds ``{"system": {"field": [pending_echo, last_seen]}}``; a
    field Accord knows nothing of (both ``None``) is left out.
    """

    def __init__(self, conn: Connection, keys: Iterable[tuple[str, str]]) -> None:
        self._conn = conn
        self._state: dict[tuple[str, str], dict[str, dict[str, list[str | None]]]] = {}
        self._dirty: set[tuple[str, str]] = set()
        wanted = sorted(set(keys))
        for row in keyed_rows(conn, echo_records, ("entity_type", "entity_id"), wanted):
            self._state[(row.entity_type, row.entity_id)] = row.state

    def load(self, key: EchoKey) -> FieldSync | None:
        found = self._field(key.system, key.entity_type, key.entity_id, key.field)
        return None if found is None else FieldSync(found[0], found[1])

    def store(self, key: EchoKey, state: FieldSync) -> None:
        self._set(
            key.system,
            key.entity_type,
            key.entity_id,
            key.field,
            state.pending_echo,
            state.last_seen,
        )

    # The rules of EchoMemory, on the batch's dictionaries directly: they run for
    # every field of every change, and EchoKey and FieldSync objects built and
    # dropped per call cost more than the rule. Tests hold them to the port's
    # own methods (tests/integration/test_runtime_fast_paths.py).

    def is_echo(
        self, system: str, entity_type: str, entity_id: str, field: str, value_digest: str
    ) -> bool:
        found = self._field(system, entity_type, entity_id, field)
        return found is not None and found[0] == value_digest

    def observe(
        self, system: str, entity_type: str, entity_id: str, field: str, value_digest: str
    ) -> None:
        found = self._field(system, entity_type, entity_id, field)
        pending = None if found is None or found[0] == value_digest else found[0]
        self._set(system, entity_type, entity_id, field, pending, value_digest)

    def remember(
        self, system: str, entity_type: str, entity_id: str, field: str, value_digest: str
    ) -> None:
        self._set(system, entity_type, entity_id, field, value_digest, value_digest)

    def forget(self, system: str, entity_type: str, entity_id: str, field: str) -> None:
        self._set(system, entity_type, entity_id, field, None, None)

    def last_seen(self, system: str, entity_type: str, entity_id: str, field: str) -> str | None:
        found = self._field(system, entity_type, entity_id, field)
        return None if found is None else found[1]

    def _field(
        self, system: str, entity_type: str, entity_id: str, field: str
    ) -> list[str | None] | None:
        record = self._state.get((entity_type, entity_id))
        if record is None:
            return None
        fields = record.get(system)
        return None if fields is None else fields.get(field)

    def _set(
        self,
        system: str,
        entity_type: str,
        entity_id: str,
        field: str,
        pending: str | None,
        seen: str | None,
    ) -> None:
        record_key = (entity_type, entity_id)
        record = self._state.setdefault(record_key, {})
        fields = record.get(system)
        old = None if fields is None else fields.get(field)
        if pending is None and seen is None:
            if fields is None or old is None:
                return
            del fields[field]
            if not fields:
                del record[system]
        else:
            if old is not None and old[0] == pending and old[1] == seen:
                return  # nothing to write back (a record already dirty stays so)
            if fields is None:
                fields = record[system] = {}
            fields[field] = [pending, seen]
        self._dirty.add(record_key)

    def flush(self) -> None:
        if not self._dirty:
            return
        state = self._state
        rows = [
            (entity_type, entity_id, canonical_json(state[(entity_type, entity_id)]))
            for entity_type, entity_id in sorted(self._dirty)
        ]
        _UPSERT_ECHO.run_many(self._conn, rows)
        self._dirty.clear()


_UPSERT_ECHO = Prepared(
    "INSERT INTO echo_records (entity_type, entity_id, state) VALUES ({p}, {p}, {json})"
    " ON CONFLICT (entity_type, entity_id) DO UPDATE SET state = excluded.state"
)
_LINK = Prepared(
    "INSERT INTO xref (entity_type, canonical_id, system, external_object, external_id)"
    " VALUES ({p}, {p}, {p}, {p}, {p}) ON CONFLICT DO NOTHING"
)
#: A batch's events, as applying reads them (locked on PostgreSQL).
_READ_EVENTS = Prepared(
    "SELECT seq, status, outcome, system, event_id, event_type, payload, trace_id"
    " FROM inbox WHERE seq IN ({seqs}) ORDER BY seq{lock}",
    seqs={"sqlite": "SELECT value FROM json_each(?)", "postgresql": "SELECT unnest(%s)"},
    lock={"sqlite": "", "postgresql": " FOR UPDATE"},
)


def _seq_list(conn: Connection, seqs: Sequence[int]) -> Any:
    """``seqs`` as :data:`_READ_EVENTS`' one parameter: a JSON array on SQLite, an
    integer array on PostgreSQL."""
    numbers = [int(seq) for seq in seqs]
    if conn.dialect.name == "sqlite":
        return "[" + ",".join(map(str, numbers)) + "]"
    return numbers


def _json_value(value: Any) -> Any:
    """A JSON column as read by the driver: text on SQLite, decoded on PostgreSQL
    (the inbox's JSON values are objects or NULL, never bare strings)."""
    return json.loads(value) if isinstance(value, str) else value


#: A write that changes nothing, to take SQLite's write lock at the start of a batch.
_WRITE_LOCK = Prepared("UPDATE audit_head SET id = 1 WHERE id = 1")
_INTEND = Prepared(
    "INSERT INTO effects (idempotency_key, system, operation, request_digest, status, attempts,"
    " created_at, updated_at, trace_id, request)"
    " VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {json})"
    " ON CONFLICT (idempotency_key) DO NOTHING"
)
_MARK_DONE = Prepared(
    "UPDATE inbox SET status = {p}, processed_at = {p}, error = NULL, outcome = {json}"
    " WHERE seq = {p}"
)
_EFFECT_ATTEMPTED = Prepared(
    "UPDATE effects SET attempts = attempts + 1, updated_at = {p} WHERE idempotency_key = {p}"
)
_EFFECT_DONE = Prepared(
    "UPDATE effects SET status = {p}, external_id = {p}, result = {json}, error = NULL,"
    " updated_at = {p} WHERE idempotency_key = {p} AND status <> {p}"
)


class _BatchedTargets(dict[str, int]):
    """Per target system: 1 if its effects go out through a batch API, else 0."""

    def __init__(self, executor: EffectExecutor) -> None:
        super().__init__()
        self._executor = executor

    def __missing__(self, system: str) -> int:
        vendor = self._executor.vendor(system)
        self[system] = answer = int(vendor is not None and vendor.batch_size > 0)
        return answer


def _outcome_text(effect_keys: Sequence[str], changes: Sequence[tuple[str, str, int]]) -> str:
    """The canonical JSON of an event's outcome: ``{"changes": [[type, id, version]…],
    "effects": [key…]}``, written out (it is stored once per event)."""
    listed = ",".join(
        f"[{json_strings((entity_type, entity_id))[1:-1]},{int(version)}]"
        for entity_type, entity_id, version in changes
    )
    return f'{{"changes":[{listed}],"effects":{json_strings(effect_keys)}}}'


def _change_text(event: str, fields: Sequence[str], version: int) -> CanonicalText:
    """The audit data of a record change, ``{"event", "fields", "version"}``, as
    canonical JSON written out (one per change in a batch)."""
    return CanonicalText(
        f'{{"event":{json_strings((event,))[1:-1]},"fields":{json_strings(fields)},'
        f'"version":{int(version)}}}'
    )


def _request_text(request: Mapping[str, Any]) -> str:
    """The JSON text :func:`~accord.runtime.effects.request_digest` hashes.

    Stored as the intent's request, so the request is serialised once for both.
    """
    return request_json(request)


def _linked_ids(
    conn: Connection, keys: Sequence[tuple[str, str, str]]
) -> dict[tuple[str, str, str], str]:
    """The canonical id the xref links to each (system, object, external id) it holds."""
    return {
        (row.system, row.external_object, row.external_id): row.canonical_id
        for row in keyed_rows(conn, xref, ("system", "external_object", "external_id"), keys)
    }


def _dead_letter(
    conn: Connection,
    actor: str,
    *,
    summary: str,
    context: dict[str, Any],
    dedupe_key: str,
    subject: str,
    trace_id: str | None,
) -> None:
    """Open a ``dead_letter`` exception and audit it, in the caller's transaction."""
    Exceptions(conn).raise_(
        DEAD_LETTER,
        role="admin",
        summary=summary,
        context=context,
        dedupe_key=dedupe_key,
        trace_id=trace_id,
    )
    append(
        conn,
        actor=actor,
        action="dead_letter",
        subject=f"{subject}",
        data={"reason": context.get("reason")},
    )


def _upsert(conn: Connection, table: Table) -> Any:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


class SqlLedger:
    """The effect ledger in the store; every call is its own committed transaction,
    taken in turn with the process's other runtime writers (``write_transaction``)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def get(self, key: str) -> LedgerEntry | None:
        with self._engine.connect() as conn:
            found = Effects(conn).get(key)
        if found is None:
            return None
        return LedgerEntry(
            found.idempotency_key,
            found.status.value,
            found.request_digest,
            found.external_id,
            found.result,
            found.attempts,
            found.error,
        )

    def intend(self, effect: Effect, digest: str) -> None:
        with write_transaction(self._engine) as conn:
            intend(conn, effect, digest)

    def attempt(self, key: str) -> None:
        with write_transaction(self._engine) as conn:
            Effects(conn).attempt(key)

    def complete(self, key: str, outcome: EffectOutcome) -> None:
        with write_transaction(self._engine) as conn:
            Effects(conn).complete(
                key, external_id=outcome.external_id, result=dict(outcome.result)
            )

    def fail(self, key: str, error: str) -> None:
        with write_transaction(self._engine) as conn:
            Effects(conn).fail(key, error)


def intend(conn: Connection, effect: Effect, digest: str) -> None:
    """Record an intent with its request, in the caller's transaction."""
    Effects(conn).intend(
        effect.key,
        system=effect.system,
        operation=effect.operation,
        request_digest=digest,
        trace_id=effect.trace_id,
    )
    conn.execute(
        update(effects)
        .where(effects.c.idempotency_key == effect.key, effects.c.request.is_(None))
        .values(request=dict(effect.request))
    )


@dataclass(slots=True)
class BatchOutcome:
    applied: int = 0
    skipped: int = 0
    dead: int = 0
    effects: list[str] = field(default_factory=list)
    changes: list[tuple[str, str, int]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Version:
    """What publishing needs of one record version."""

    system: str
    changed_fields: tuple[str, ...]
    data: Mapping[str, Any]
    trace_id: str | None
    at: datetime


#: What the pipeline holds in memory between the parts of a batch (versions applied
#: and not yet published, intents recorded and not yet performed), at most.
HELD_LIMIT = 20_000

_K = TypeVar("_K")
_V = TypeVar("_V")


class _Held(Generic[_K, _V]):
    """What this process's apply handed to the batch's effects and publish, in memory.

    They take the items out; an item not held (a batch recovered after a
    crash, applied by another worker, retried) is read from the store instead.
    The limit only bounds what a batch that never got that far could leave
    behind (the oldest go first).
    """

    def __init__(self, limit: int = HELD_LIMIT) -> None:
        self._limit = limit
        self._items: dict[_K, _V] = {}
        self._lock = threading.Lock()

    def add(self, items: Iterable[tuple[_K, _V]]) -> None:
        with self._lock:
            held = self._items
            held.update(items)
            excess = len(held) - self._limit
            if excess > 0:
                for key in list(itertools.islice(held, excess)):
                    del held[key]

    def take_many(self, keys: Iterable[_K]) -> dict[_K, _V]:
        """The items of ``keys`` held here, no longer held once taken."""
        with self._lock:
            held = self._items
            return {key: held.pop(key) for key in keys if key in held}


class Pipeline:
    """Applies inbox events and performs their effects; no state of its own."""

    def __init__(
        self,
        engine: Engine,
        policy: OwnershipPolicy,
        executor: EffectExecutor,
        *,
        handlers: Mapping[str, Handler] | None = None,
        routes: Iterable[Route] = (),
        stream: EventStream | None = None,
        actor: str = "accord",
    ) -> None:
        self.engine = engine
        self.policy = policy
        self.executor = executor
        self.handlers: dict[str, Handler] = dict(handlers or {})
        self.routes: dict[str, list[Route]] = {}
        for route in routes:
            self.routes.setdefault(route.entity_type, []).append(route)
        self.stream = stream
        self.actor = actor
        #: Batches that had to be applied one event at a time (a health signal).
        self.fallbacks = 0
        self._recent: _Held[tuple[str, str, int], _Version] = _Held()
        # intents recorded by apply, untried: run_effects need not read them back
        self._fresh: _Held[str, Effect] = _Held()
        self._intake = InboxIntake.for_engine(engine)
        # events this process has stored, ever: dispatchers wait on it instead of
        # polling the inbox while a batch fills or while there is nothing to do
        self._arrived = threading.Condition()
        self._arrivals = 0
        # the arrivals count each waiting dispatcher waits for: intake wakes
        # them only when one is reached, not on every event
        self._targets: list[int] = []

    # -- intake -----------------------------------------------------------------

    def ingest(
        self,
        system: str,
        event_id: str,
        event_type: str,
        payload: Mapping[str, Any],
        trace_id: str | None = None,
    ) -> bool:
        """Store an inbound event once; ``False`` means a redelivery, acknowledged.

        Committed when it returns: the caller may acknowledge the delivery.
        """
        if self._intake is not None:
            new = self._intake.accept(
                system, event_id, event_type=event_type, payload=payload, trace_id=trace_id
            )
        else:
            with write_transaction(self.engine) as conn:
                new = Inbox(conn).accept(
                    system,
                    event_id,
                    event_type=event_type,
                    payload=dict(payload),
                    trace_id=trace_id,
                )
        if new:
            self._note_arrivals(1)
        return new

    def ingest_many(self, events: Sequence[Mapping[str, Any]], chunk: int = 1000) -> int:
        """Store many inbound events (a backfill); returns how many were new."""
        accepted = 0
        for start in range(0, len(events), chunk):
            with write_transaction(self.engine) as conn:
                new = Inbox(conn).accept_many(events[start : start + chunk])
            accepted += new
            self._note_arrivals(new)
        return accepted

    @property
    def arrivals(self) -> int:
        """How many new events this process has stored so far."""
        with self._arrived:
            return self._arrivals

    def _note_arrivals(self, count: int) -> None:
        if count:
            with self._arrived:
                self._arrivals += count
                targets = self._targets
                if targets and self._arrivals >= min(targets):
                    self._arrived.notify_all()

    def wait_for_arrivals(self, since: int, count: int, timeout: float) -> int:
        """Wait until ``count`` events have arrived in this process after the
        :attr:`arrivals` mark ``since``, or ``timeout`` seconds; returns the mark now.

        Events stored by other processes (other API servers in scale-out) are
        not counted: a caller still claims from the store when the wait ends.
        """
        deadline = time.monotonic() + timeout
        target = since + count
        with self._arrived:
            self._targets.append(target)
            try:
                while self._arrivals < target:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._arrived.wait(remaining)
            finally:
                self._targets.remove(target)
            return self._arrivals

    def close(self) -> None:
        """Give back the connection intake holds (it is taken again on the next event)."""
        if self._intake is not None:
            self._intake.close()

    def claim(self, limit: int, lease: timedelta) -> list[tuple[int, int]]:
        """Claim due events under a lease; returns (seq, attempt) pairs."""
        with write_transaction(self.engine) as conn:
            return Inbox(conn).claim_seqs(limit, lease=lease)

    # -- apply ------------------------------------------------------------------

    def handler_for(self, system: str) -> Handler:
        return self.handlers.get(system) or self.handlers.get("*") or passthrough

    def apply_batch(self, seqs: Sequence[int]) -> BatchOutcome:
        """Apply a batch in one transaction; on any trouble, event by event.

        The fast path reads and writes the whole batch in a handful of
        statements. If it fails (a constraint, a record changed underneath), the
        batch is applied again one event per transaction, which isolates the
        event at fault and lets every other one through.
        """
        result = BatchOutcome()
        try:
            poison = self._apply_bulk(seqs, result)
        except TransientError:
            raise
        except Exception as exc:  # any failure falls back to the safe path
            log.info("bulk apply fell back to one event at a time", error=repr(exc))
            self.fallbacks += 1
            result = BatchOutcome()
            for seq in seqs:
                self._apply_one(seq, result)
            return result
        for seq, reason in poison:
            self._dead_letter_event(seq, reason)
            result.dead += 1
        return result

    def _apply_bulk(self, seqs: Sequence[int], result: BatchOutcome) -> list[tuple[int, Exception]]:
        """Apply ``seqs`` in one transaction; ``result`` is updated only once it commits."""
        poison: list[tuple[int, Exception]] = []
        done = BatchOutcome()
        self._apply_in(seqs, done, poison)
        result.applied += done.applied
        result.skipped += done.skipped
        result.effects.extend(done.effects)
        result.changes.extend(done.changes)
        return poison

    def _apply_in(
        self, seqs: Sequence[int], result: BatchOutcome, poison: list[tuple[int, Exception]]
    ) -> None:
        started = time.time_ns()
        with write_transaction(self.engine) as conn:
            if conn.dialect.name == "sqlite":
                # take SQLite's write lock before reading, so nothing moves underneath
                _WRITE_LOCK.run(conn, ())
            # only what applying needs (the timestamps would each be parsed per
            # row), by a prepared statement: building a select per batch cost
            # more than running it
            rows: Iterable[Any] = _READ_EVENTS.run(conn, (_seq_list(conn, seqs),))
            work: list[tuple[InboundEvent, Sequence[CanonicalUpsert]]] = []
            for seq, status, outcome_json, system, event_id, event_type, payload, trace in rows:
                if status == InboxStatus.DONE.value:
                    outcome = _json_value(outcome_json) or {}
                    result.skipped += 1
                    result.effects.extend(outcome.get("effects", []))
                    result.changes.extend(tuple(c) for c in outcome.get("changes", []))
                    continue
                if status == InboxStatus.DEAD.value:
                    result.skipped += 1
                    continue
                event = InboundEvent(seq, system, event_id, event_type, _json_value(payload), trace)
                try:
                    work.append((event, self.handler_for(event.system)(event)))
                except AccordError as exc:
                    if exc.retryable:
                        raise
                    poison.append((event.seq, exc))
            if not work:
                return
            ids = self._canonical_ids(conn, work)
            keys = {
                (u.entity_type, ids[(e.system, u.external_object, u.external_id)])
                for e, ups in work
                for u in ups
            }
            stored = Records(conn).get_many(keys, lock=True)
            state: dict[tuple[str, str], dict[str, Any]] = {
                k: dict(r.data) for k, r in stored.items()
            }
            version: dict[tuple[str, str], int] = {k: r.version for k, r in stored.items()}
            # digest of each record's data as it stands, kept up to date through the batch
            digests: dict[tuple[str, str], str] = {k: r.digest for k, r in stored.items()}
            echo = BulkEcho(conn, keys)
            puts: list[PutItem] = []
            expected: list[int] = []
            audit: list[tuple[str, str, str, Mapping[str, Any] | CanonicalText | None]] = []
            intents: list[tuple[Any, ...]] = []
            fresh: list[tuple[str, Effect]] = []
            outcomes: list[tuple[Any, ...]] = []
            exceptions = Exceptions(conn)
            now = utc_now()
            at = db_time(conn, now)
            done = InboxStatus.DONE.value
            # attempts an intent is recorded with: 1 where it goes out through a
            # vendor's batch API (see _perform_batches), else 0
            batched = _BatchedTargets(self.executor)
            for event, upserts in work:
                event_keys: list[str] = []
                event_changes: list[tuple[str, str, int]] = []
                for upsert in upserts:
                    cid = ids[(event.system, upsert.external_object, upsert.external_id)]
                    key = (upsert.entity_type, cid)
                    current = state.get(key)
                    decision = decide(
                        self.policy,
                        upsert.entity_type,
                        current,
                        upsert.fields,
                        event.system,
                        echo,
                        entity_id=cid,
                    )
                    record_inbound(echo, decision)
                    for conflict in decision.conflicts:
                        self._conflict(exceptions, conflict, event.trace_id)
                    changes = decision.changes
                    if not changes:
                        continue
                    data = dict(current or {})
                    data.update(changes)
                    # serialised once: the digest, the stored record and its version
                    text = canonical_json(data)
                    data_digest = hashlib.sha256(text.encode()).hexdigest()
                    if current is not None and data_digest == digests[key]:
                        continue
                    state[key] = data
                    digests[key] = data_digest
                    version[key] = version.get(key, 0) + 1
                    puts.append(
                        PutItem(
                            upsert.entity_type,
                            cid,
                            data,
                            event.system,
                            self.actor,
                            event.trace_id,
                            canonical=text,
                            digest=data_digest,
                        )
                    )
                    expected.append(version[key])
                    event_changes.append((upsert.entity_type, cid, version[key]))
                    audit.append(
                        (
                            f"{self.actor}:{event.system}",
                            "record.changed",
                            f"{upsert.entity_type}/{cid}",
                            _change_text(
                                f"{event.system}:{event.event_id}", sorted(changes), version[key]
                            ),
                        )
                    )
                    for route in self.routes.get(upsert.entity_type, ()):
                        if route.target == event.system:
                            continue
                        fields = outbound(
                            self.policy, upsert.entity_type, data, route.target, echo, entity_id=cid
                        )
                        if not fields:
                            continue
                        record_outbound(echo, route.target, upsert.entity_type, cid, fields)
                        request = {
                            "entity_type": upsert.entity_type,
                            "id": cid,
                            "version": version[key],
                            "fields": fields,
                        }
                        effect_id = ordered_effect_key(
                            event.seq,
                            route.target,
                            route.operation,
                            upsert.entity_type,
                            cid,
                            str(version[key]),
                        )
                        request_text = _request_text(request)
                        fresh.append(
                            (
                                effect_id,
                                Effect(
                                    route.target,
                                    route.operation,
                                    effect_id,
                                    request,
                                    event.trace_id,
                                ),
                            )
                        )
                        intents.append(
                            (
                                effect_id,
                                route.target,
                                route.operation,
                                hashlib.sha256(request_text.encode()).hexdigest(),
                                EffectStatus.INTENT.value,
                                batched[route.target],
                                at,
                                at,
                                event.trace_id,
                                request_text,
                            )
                        )
                        event_keys.append(effect_id)
                outcomes.append((done, at, _outcome_text(event_keys, event_changes), event.seq))
                result.applied += 1
                result.effects.extend(event_keys)
                result.changes.extend(event_changes)
            written = Records(conn, clock=lambda: now).put_many(puts, base=stored)
            if [w.version for w in written] != expected:
                raise RuleViolation("records changed while the batch was applied")
            append_many(conn, audit, at=now, keep_entries=False)
            echo.flush()
            _INTEND.run_many(conn, intents)
            _MARK_DONE.run_many(conn, outcomes)
        # committed: effects and publish can take the intents and versions from memory
        self._fresh.add(fresh)
        if self.stream is not None:
            self._recent.add(
                (
                    (put.entity_type, put.id, put_result.version),
                    _Version(put.system, put_result.changed_fields, put.data, put.trace_id, now),
                )
                for put, put_result in zip(puts, written, strict=True)
            )
        record_spans(
            "workflow step apply",
            (event.trace_id for event, _ in work),
            started,
            time.time_ns(),
            {"accord.batch.events": len(work)},
        )

    def _canonical_ids(
        self, conn: Connection, work: Sequence[tuple[InboundEvent, Sequence[CanonicalUpsert]]]
    ) -> dict[tuple[str, str, str], str]:
        """Canonical id of every external key in the batch, linking the new ones."""
        wanted = {
            (e.system, u.external_object, u.external_id): u.entity_type
            for e, ups in work
            for u in ups
        }
        ids = _linked_ids(conn, sorted(wanted))
        links = []
        for (system, obj, ext), entity_type in wanted.items():
            if (system, obj, ext) in ids:
                continue
            # A new record's id sorts by creation time, so a batch of new records
            # lands on the last pages of each index keyed by it instead of on
            # a random page each: about a third less to write per event.
            cid = new_id()
            ids[(system, obj, ext)] = cid
            links.append((entity_type, cid, system, obj, ext))
        _LINK.run_many(conn, links)
        if links and conn.dialect.name != "sqlite":
            # Another worker may have linked the same external key first (the
            # insert then did nothing): its id is the one. On SQLite the batch
            # has held the write lock since it began, so nobody else could.
            ids.update(_linked_ids(conn, [(system, obj, ext) for _, _, system, obj, ext in links]))
        return ids

    def _conflict(self, exceptions: Exceptions, conflict: Any, trace_id: str | None) -> None:
        owner_role = self.policy.systems.get(conflict.owner, conflict.owner)
        exceptions.raise_(
            "ownership_conflict",
            role=ROLE_OF_SYSTEM_ROLE.get(owner_role, "admin"),
            summary=conflict.message,
            context={
                "entity_type": conflict.entity_type,
                "id": conflict.entity_id,
                "field": conflict.field,
                "current": conflict.current,
                "incoming": conflict.incoming,
                "owner": conflict.owner,
                "source": conflict.source,
            },
            trace_id=trace_id,
        )

    def _apply_one(self, seq: int, result: BatchOutcome) -> None:
        """The safe path: one event in its own transaction, dead-lettered if it cannot apply."""
        try:
            poison = self._apply_bulk([seq], result)
        except AccordError as exc:
            if exc.retryable:
                raise
            poison = [(seq, exc)]
        for dead_seq, reason in poison:
            self._dead_letter_event(dead_seq, reason)
            result.dead += 1

    def _dead_letter_event(self, seq: int, exc: Exception) -> None:
        with write_transaction(self.engine) as conn:
            Inbox(conn).mark(seq, InboxStatus.DEAD, error=str(exc))
            row = conn.execute(select(inbox).where(inbox.c.seq == seq)).one()
            _dead_letter(
                conn,
                self.actor,
                summary=f"event {row.system}:{row.event_id} could not be applied: {exc}",
                context={
                    "kind": "event",
                    "seq": seq,
                    "system": row.system,
                    "event_id": row.event_id,
                    "event_type": row.event_type,
                    "reason": str(exc),
                },
                dedupe_key=f"event:{row.system}:{row.event_id}",
                subject=f"inbox/{seq}",
                trace_id=row.trace_id,
            )

    # -- effects ----------------------------------------------------------------

    def run_effects(self, keys: Sequence[str]) -> dict[str, int]:
        """Perform recorded intents; a failing effect is dead-lettered, the rest go on.

        Untried intents for a vendor with a batch API go out in batches (one
        call per ``batch_size`` effects); anything else — retries, doubts, items
        a batch refused — goes through the executor one by one, which looks an
        attempted effect up at the vendor before sending it again.
        """
        counts = {"done": 0, "replayed": 0, "dead": 0}
        wanted = list(dict.fromkeys(keys))
        # intents this process's apply just recorded are untried: no need
        # to read them back; any other is read, with its status, from the ledger
        fresh = self._fresh.take_many(wanted)
        rows: dict[str, Any] = {}
        unknown = [key for key in wanted if key not in fresh]
        if unknown:
            with self.engine.connect() as conn:
                for start in range(0, len(unknown), 500):
                    chunk = unknown[start : start + 500]
                    for row in conn.execute(
                        select(
                            effects.c.idempotency_key,
                            effects.c.system,
                            effects.c.operation,
                            effects.c.status,
                            effects.c.attempts,
                            effects.c.request,
                            effects.c.trace_id,
                        ).where(effects.c.idempotency_key.in_(chunk))
                    ):
                        rows[row.idempotency_key] = row
        single: list[Effect] = []
        batches: dict[str, list[Effect]] = {}
        # intents read from the ledger untried: marked attempted before they are sent
        unmarked: set[str] = set()
        for key in wanted:
            effect = fresh.get(key)
            untried = True
            if effect is None:
                entry = rows.get(key)
                if entry is None:
                    continue
                if entry.status == EffectStatus.DONE.value:
                    counts["replayed"] += 1
                    continue
                effect = Effect(
                    entry.system, entry.operation, key, entry.request or {}, entry.trace_id
                )
                untried = entry.status == EffectStatus.INTENT.value and entry.attempts == 0
                if untried:
                    unmarked.add(key)
            vendor = self.executor.vendor(effect.system)
            if vendor is not None and vendor.batch_size and untried:
                batches.setdefault(effect.system, []).append(effect)
            else:
                single.append(effect)
        for system, batch in batches.items():
            single.extend(self._perform_batches(system, batch, counts, unmarked))
        spans = tracer("accord.runtime")
        for effect in single:
            try:
                with span_in_trace(
                    spans,
                    f"effect {effect.system} {effect.operation}",
                    effect.trace_id,
                    **{"accord.effect.key": effect.key},
                ):
                    outcome = self.executor.execute(effect)
            except (EffectFailed, InvalidInput) as exc:
                self._dead_letter_effect(effect, exc)
                counts["dead"] += 1
                continue
            counts["replayed" if outcome.replayed else "done"] += 1
        return counts

    def _perform_batches(
        self, system: str, batch: list[Effect], counts: dict[str, int], unmarked: set[str]
    ) -> list[Effect]:
        """Send ``batch`` through the vendor's batch API; returns what must go singly.

        An effect must be marked attempted before it is sent: marked and not
        recorded done, it is looked up at the vendor before it is ever sent
        again. Apply records an intent bound for a batch API as attempted from
        the start (so a crash before the call costs one look-up, and a batch no
        write of its own before it); the keys in ``unmarked`` (intents recorded
        otherwise) are marked here, in one transaction. The outcomes are recorded
        in one transaction after the last call (or when a call fails
        unexpectedly), whatever the number of calls.
        """
        vendor = self.executor.vendor(system)
        assert vendor is not None
        keys = [effect.key for effect in batch if effect.key in unmarked]
        if keys:
            with write_transaction(self.engine) as conn:
                attempted = db_time(conn, utc_now())
                _EFFECT_ATTEMPTED.run_many(conn, [(attempted, key) for key in keys])
        leftovers: list[Effect] = []
        done: list[tuple[str, str | None, str]] = []
        try:
            for start in range(0, len(batch), vendor.batch_size):
                chunk = batch[start : start + vendor.batch_size]
                started = time.time_ns()
                try:
                    with span_in_trace(
                        tracer("accord.runtime"),
                        f"effect {system} batch",
                        chunk[0].trace_id,
                        **{"accord.batch.effects": len(chunk)},
                    ):
                        results = vendor.perform_many(chunk)
                except AccordError:
                    leftovers.extend(chunk)  # failed or lost: one by one, looking first
                    continue
                record_spans(
                    f"effect {system} (batched)",
                    (effect.trace_id for effect in chunk[1:]),
                    started,
                    time.time_ns(),
                    {"accord.batch.effects": len(chunk)},
                )
                for effect, result in zip(chunk, results, strict=True):
                    if isinstance(result, EffectOutcome):
                        done.append((effect.key, result.external_id, canonical_json(result.result)))
                    else:
                        leftovers.append(effect)
        finally:
            if done:
                with write_transaction(self.engine) as conn:
                    at = db_time(conn, utc_now())
                    _EFFECT_DONE.run_many(
                        conn,
                        [
                            (
                                EffectStatus.DONE.value,
                                external_id,
                                text,
                                at,
                                key,
                                EffectStatus.DONE.value,
                            )
                            for key, external_id, text in done
                        ],
                    )
                counts["done"] += len(done)
        return leftovers

    def _dead_letter_effect(self, effect: Effect, exc: Exception) -> None:
        with write_transaction(self.engine) as conn:
            _dead_letter(
                conn,
                self.actor,
                summary=f"{effect.system} {effect.operation} failed: {exc}",
                context={
                    "kind": "effect",
                    "key": effect.key,
                    "system": effect.system,
                    "operation": effect.operation,
                    "reason": str(exc),
                },
                dedupe_key=f"effect:{effect.key}",
                subject=f"effect/{effect.key}",
                trace_id=effect.trace_id,
            )

    # -- events -----------------------------------------------------------------

    def publish(self, changes: Sequence[tuple[str, str, int]]) -> int:
        """Publish canonical changes; event ids are derived, so a re-run is deduped.

        The versions this process has just applied are taken from memory; any
        other (a batch recovered after a crash, applied by another worker) is
        read from the store.
        """
        if self.stream is None or not changes:
            return 0
        wanted = [(str(c[0]), str(c[1]), int(c[2])) for c in changes]
        found = self._recent.take_many(wanted)
        missing = [key for key in wanted if key not in found]
        if missing:
            found.update(self._stored_versions(missing))
        built = []
        for entity_type, entity_id, version in wanted:
            stored = found.get((entity_type, entity_id, version))
            if stored is None:
                continue
            built.append(
                CanonicalChange.create(
                    entity_type=entity_type,
                    entity_id=entity_id,
                    version=version,
                    system=stored.system,
                    changed_fields=list(stored.changed_fields),
                    data=stored.data,
                    trace_id=stored.trace_id or f"{entity_type}/{entity_id}",
                    time=stored.at,
                )
            )
        self.stream.publish_many(built)
        return len(built)

    def _stored_versions(
        self, wanted: Sequence[tuple[str, str, int]]
    ) -> dict[tuple[str, str, int], _Version]:
        found: dict[tuple[str, str, int], _Version] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                # by record and from the batch's lowest version up: a search of the
                # index per record, and one statement shape whatever the batch holds
                lowest = min(version for _, _, version in chunk)
                records_in = {(entity_type, id_) for entity_type, id_, _ in chunk}
                for row in conn.execute(
                    select(record_versions).where(
                        keys_in((record_versions.c.entity_type, record_versions.c.id), records_in),
                        record_versions.c.version >= lowest,
                    )
                ):
                    found[(row.entity_type, row.id, row.version)] = _Version(
                        row.system, tuple(row.changed_fields), row.data, row.trace_id, row.at
                    )
        return found
