"""The append-only audit log, hash-chained so that tampering shows.

Each entry's ``hash`` is the SHA-256 of the canonical JSON of its fields and of
the previous entry's hash (``prev_hash``), so changing, inserting or removing
an entry anywhere breaks the chain from that point on. Cutting entries off the
*end* leaves a shorter chain that is still valid, so the chain is anchored: the
one-row ``audit_head`` table holds the entry count and the last hash, updated
in the same transaction as each append. :func:`verify` walks the chain, then
compares its end with the anchor, and names the first broken ``seq`` and what
most plausibly happened there.

What this does not do: someone who can write to the database *and* recompute
hashes can rewrite the whole chain from some entry on, anchor included. To
make that visible too, publish :attr:`AuditReport.head_hash` somewhere the
database administrator cannot reach (a log shipper, a ticket, a signed mail)
and compare later.
"""

from __future__ import annotations

import hashlib
import json
import json.encoder
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Row, select

from accord.errors import InvalidInput, RuleViolation
from accord.jsontext import compiled
from accord.store.fast import Prepared, db_time
from accord.store.tables import GENESIS_HASH, audit_head, audit_log

__all__ = [
    "AuditEntry",
    "AuditProblem",
    "append_many",
    "AuditReport",
    "append",
    "CanonicalText",
    "canonical_json",
    "content_digest",
    "entries",
    "entry_hash",
    "json_document",
    "verify",
]

# How json.dumps(..., ensure_ascii=False) writes a string.
_encode_string: Callable[[str], str] = json.encoder.encode_basestring

# How far verify() searches for the original seq of an entry that was
# renumbered (entries before it deleted and the rest shifted down).
_MAX_RENUMBER_SEARCH = 100_000


#: The encoder of :func:`canonical_json`, built once: ``json.dumps`` with any
#: non-default option builds a new encoder on every call, and even
#: ``JSONEncoder.encode`` sets one up per call (:mod:`accord.jsontext`), which
#: costs more than encoding a small document.
_CANONICAL = compiled(
    json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
)


def canonical_json(value: Any) -> str:
    """One text per JSON value: sorted keys, no spaces, UTF-8, no NaN.

    Hashes and digests are taken over this form, so two equal documents hash
    alike whatever their key order, and a value JSON cannot hold (a datetime, a
    set, a float NaN) is refused instead of being turned into some string.
    """
    try:
        return _CANONICAL(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"not a JSON document: {exc}") from None


def content_digest(value: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of ``value``."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def json_document(data: Mapping[str, Any] | None) -> dict[str, Any]:
    """``data`` as it will read back from a JSON column (tuples become lists…).

    Hashes and digests are taken over this form, so that recomputing them
    from what the database returns gives the same answer.
    """
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise InvalidInput(f"expected a JSON object, got {type(data).__name__}")
    loaded: dict[str, Any] = json.loads(canonical_json(data))
    return loaded


def _utc_text(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def entry_hash(
    *,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    subject: str,
    data: Mapping[str, Any],
    prev_hash: str,
) -> str:
    """The hash of one entry; it covers every field, the position and the link."""
    material = {
        "seq": seq,
        "at": _utc_text(at),
        "actor": actor,
        "action": action,
        "subject": subject,
        "data": data,
        "prev_hash": prev_hash,
    }
    return content_digest(material)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audit entry as stored."""

    seq: int
    at: datetime
    actor: str
    action: str
    subject: str
    data: dict[str, Any]
    prev_hash: str
    hash: str

    def recomputed_hash(self, *, seq: int | None = None) -> str:
        """The hash this entry should carry (at ``seq``, default its own)."""
        return entry_hash(
            seq=self.seq if seq is None else seq,
            at=self.at,
            actor=self.actor,
            action=self.action,
            subject=self.subject,
            data=self.data,
            prev_hash=self.prev_hash,
        )


class AuditProblem(StrEnum):
    """What :func:`verify` found wrong, at the first broken entry."""

    ALTERED = "altered"  #: an entry's content no longer matches its hash
    INSERTED = "inserted"  #: an entry was added that the chain does not lead through
    DELETED = "deleted"  #: entries are missing: a gap, a renumbering or a cut tail
    ANCHOR_MISSING = "anchor missing"  #: the audit_head row is gone


@dataclass(frozen=True, slots=True)
class AuditReport:
    """The result of :func:`verify`; ``ok`` unless ``problem`` is set."""

    #: Entries read from the log.
    checked: int
    #: The entry count the anchor records (None when the anchor is missing).
    anchored_count: int | None
    #: The anchored last hash: publish it elsewhere to detect a full rewrite.
    head_hash: str | None
    problem: AuditProblem | None = None
    #: The first seq at which the log is broken.
    seq: int | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.problem is None

    def __str__(self) -> str:
        if self.ok:
            return f"audit log intact: {self.checked} entries, head {self.head_hash}"
        where = f" at seq {self.seq}" if self.seq is not None else ""
        return f"audit log broken{where} ({self.problem}): {self.detail}"


def _entry(row: Row[Any]) -> AuditEntry:
    return AuditEntry(
        seq=row.seq,
        at=row.at,
        actor=row.actor,
        action=row.action,
        subject=row.subject,
        data=row.data,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def append(
    conn: Connection,
    *,
    actor: str,
    action: str,
    subject: str,
    data: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEntry:
    """Append one entry in the caller's transaction; it is durable when that commits.

    The anchor row is updated *first*: that takes the row lock on PostgreSQL
    and the write lock on SQLite before the head is read, so concurrent
    appenders queue up instead of both claiming the same ``seq``.
    """
    when = at if at is not None else datetime.now(UTC)
    if when.tzinfo is None or when.utcoffset() is None:
        raise InvalidInput("audit time must be timezone-aware", field="at")
    when = when.astimezone(UTC)
    document = json_document(data)
    head: Any = _MOVE_HEAD.run(conn, (1,)).one_or_none()
    if head is None:
        raise _anchor_missing()
    seq, prev_hash = int(head[0]), str(head[1])
    digest = entry_hash(
        seq=seq,
        at=when,
        actor=actor,
        action=action,
        subject=subject,
        data=document,
        prev_hash=prev_hash,
    )
    conn.execute(
        audit_log.insert().values(
            seq=seq,
            at=when,
            actor=actor,
            action=action,
            subject=subject,
            data=document,
            prev_hash=prev_hash,
            hash=digest,
        )
    )
    _SET_HEAD_HASH.run(conn, (digest,))
    return AuditEntry(seq, when, actor, action, subject, document, prev_hash, digest)


_INSERT_ENTRY = Prepared(
    "INSERT INTO audit_log (seq, at, actor, action, subject, data, prev_hash, hash)"
    " VALUES ({p}, {p}, {p}, {p}, {p}, {json}, {p}, {p})"
)
#: Moves the anchor's count by the entries about to be appended, taking its lock.
_MOVE_HEAD = Prepared(
    "UPDATE audit_head SET count = count + {p} WHERE id = 1 RETURNING count, head_hash"
)
_SET_HEAD_HASH = Prepared("UPDATE audit_head SET head_hash = {p} WHERE id = 1")


def _anchor_missing() -> RuleViolation:
    return RuleViolation(
        "the audit anchor (audit_head) is missing: run the migrations, "
        "or investigate with `accord audit verify`"
    )


class CanonicalText(str):
    """A JSON object already written as :func:`canonical_json` writes it.

    A caller that builds a small document's text itself (a batch writing one
    entry per change) passes it as this, and it is hashed and stored as it is.
    """

    __slots__ = ()


def _string(value: str) -> str:
    """``value`` as :func:`canonical_json` writes a string."""
    if not isinstance(value, str):
        raise InvalidInput(f"expected text, got {type(value).__name__}")
    return _encode_string(value)


def append_many(
    conn: Connection,
    items: Sequence[tuple[str, str, str, Mapping[str, Any] | CanonicalText | None]],
    *,
    at: datetime | None = None,
    keep_entries: bool = True,
) -> list[AuditEntry]:
    """Append ``(actor, action, subject, data)`` entries in order, in a few statements.

    The chain is the same as appending them one by one: the anchor is moved by
    the number of entries first (taking the lock), then each hash links to the
    one before. ``data`` may be given already serialised, as
    :class:`CanonicalText`. With ``keep_entries=False`` nothing is built to return
    (a batch that only appends).
    """
    if not items:
        return []
    when = (at if at is not None else datetime.now(UTC)).astimezone(UTC)
    # prepared: a batch appends on every commit, and building the statement
    # each time cost more than running it
    head: Any = _MOVE_HEAD.run(conn, (len(items),)).one_or_none()
    if head is None:
        raise _anchor_missing()
    seq = int(head[0]) - len(items)
    prev_hash = str(head[1])
    at_text = _string(_utc_text(when))
    stored_at = db_time(conn, when)
    written: list[AuditEntry] = []
    rows: list[tuple[Any, ...]] = []
    for actor, action, subject, data in items:
        seq += 1
        if isinstance(data, CanonicalText):
            text = str(data)
        elif data is None:
            text = "{}"
        elif not isinstance(data, Mapping):
            raise InvalidInput(f"expected a JSON object, got {type(data).__name__}")
        else:
            # the canonical text is hashed and stored: serialised once per entry
            text = canonical_json(data)
        # what entry_hash() hashes, written out: canonical JSON, keys in order
        material = (
            f'{{"action":{_string(action)},"actor":{_string(actor)},"at":{at_text},'
            f'"data":{text},"prev_hash":{_string(prev_hash)},"seq":{seq},'
            f'"subject":{_string(subject)}}}'
        )
        digest = hashlib.sha256(material.encode()).hexdigest()
        if keep_entries:
            document = json.loads(text)
            written.append(
                AuditEntry(seq, when, actor, action, subject, document, prev_hash, digest)
            )
        rows.append((seq, stored_at, actor, action, subject, text, prev_hash, digest))
        prev_hash = digest
    _INSERT_ENTRY.run_many(conn, rows)
    _SET_HEAD_HASH.run(conn, (prev_hash,))
    return written


def entries(
    conn: Connection, *, subject: str | None = None, after_seq: int = 0, limit: int = 100
) -> list[AuditEntry]:
    """Entries after ``after_seq`` in order, optionally about one subject (paging)."""
    query = select(audit_log).where(audit_log.c.seq > after_seq)
    if subject is not None:
        query = query.where(audit_log.c.subject == subject)
    rows = conn.execute(query.order_by(audit_log.c.seq).limit(limit))
    return [_entry(row) for row in rows]


def verify(conn: Connection) -> AuditReport:
    """Walk the whole chain and compare its end with the anchor.

    Safe to run while entries are being appended: the anchor is read before
    the walk, and entries found beyond it are accepted only if the anchor has
    caught up with them when read again.
    """
    head = _anchor(conn)
    anchored = None if head is None else head[0]
    head_hash = None if head is None else head[1]

    def broken(problem: AuditProblem, seq: int | None, detail: str, checked: int) -> AuditReport:
        return AuditReport(checked, anchored, head_hash, problem, seq, detail)

    expected_seq = 1
    prev_hash = GENESIS_HASH
    seen: dict[str, int] = {GENESIS_HASH: 0}
    hash_at_anchor = GENESIS_HASH if anchored == 0 else None
    checked = 0
    for row in conn.execute(select(audit_log).order_by(audit_log.c.seq)):
        entry = _entry(row)
        checked += 1
        if entry.seq != expected_seq:
            missing = _span(expected_seq, entry.seq - 1)
            return broken(
                AuditProblem.DELETED,
                expected_seq,
                f"{missing} missing: seq jumps from {expected_seq - 1} to {entry.seq}",
                checked,
            )
        own_ok = entry.recomputed_hash() == entry.hash
        link_ok = entry.prev_hash == prev_hash
        if not (own_ok and link_ok):
            problem, seq, detail = _diagnose(conn, entry, prev_hash, seen, own_ok, anchored)
            return broken(problem, seq, detail, checked)
        seen[entry.hash] = entry.seq
        prev_hash = entry.hash
        if entry.seq == anchored:
            hash_at_anchor = entry.hash
        expected_seq += 1

    if head is None or anchored is None:
        return broken(
            AuditProblem.ANCHOR_MISSING,
            None,
            "the audit_head row is missing, so a cut-off tail cannot be ruled out",
            checked,
        )
    if checked < anchored:
        return broken(
            AuditProblem.DELETED,
            checked + 1,
            f"{_span(checked + 1, anchored)} cut off the end: the anchor counts {anchored}",
            checked,
        )
    if hash_at_anchor != head_hash:
        return broken(
            AuditProblem.ALTERED,
            anchored,
            f"entry {anchored} does not carry the anchored head hash: "
            "the chain was rewritten up to it",
            checked,
        )
    if checked > anchored:
        # Appends may have committed after the anchor was read: read it again.
        again = _anchor(conn)
        if again is None or not (
            again[0] > checked or (again[0] == checked and again[1] == prev_hash)
        ):
            return broken(
                AuditProblem.INSERTED,
                anchored + 1,
                f"{_span(anchored + 1, checked)} added after the anchored head "
                f"(the anchor counts {anchored})",
                checked,
            )
        anchored, head_hash = again
    return AuditReport(checked, anchored, head_hash)


def _anchor(conn: Connection) -> tuple[int, str] | None:
    """The anchor's (count, head hash), or None if the row is gone."""
    row = conn.execute(
        select(audit_head.c.count, audit_head.c.head_hash).where(audit_head.c.id == 1)
    ).one_or_none()
    return None if row is None else (int(row[0]), str(row[1]))


def _span(first: int, last: int) -> str:
    return f"entry {first} is" if first == last else f"entries {first}–{last} are"


def _diagnose(
    conn: Connection,
    entry: AuditEntry,
    prev_hash: str,
    seen: Mapping[str, int],
    own_ok: bool,
    anchored: int | None,
) -> tuple[AuditProblem, int, str]:
    """Say what most plausibly broke the chain at ``entry`` (the first bad one)."""
    # A later entry still links to the last good one: everything between was
    # slipped in (and the entries after it renumbered to make room).
    rejoin = conn.execute(
        select(audit_log.c.seq)
        .where(audit_log.c.prev_hash == prev_hash, audit_log.c.seq > entry.seq)
        .order_by(audit_log.c.seq)
        .limit(1)
    ).scalar_one_or_none()
    if rejoin is not None:
        return (
            AuditProblem.INSERTED,
            entry.seq,
            f"{_span(entry.seq, rejoin - 1)} not part of the chain: "
            f"entry {rejoin} links straight to entry {entry.seq - 1}",
        )
    if entry.prev_hash != prev_hash:
        earlier = seen.get(entry.prev_hash)
        if earlier is not None and earlier < entry.seq - 1:
            return (
                AuditProblem.INSERTED,
                earlier + 1,
                f"{_span(earlier + 1, entry.seq - 1)} not part of the chain: "
                f"entry {entry.seq} links straight to entry {earlier}",
            )
        if own_ok:
            return (
                AuditProblem.ALTERED,
                entry.seq - 1,
                f"entry {entry.seq - 1} was changed and re-hashed: "
                f"entry {entry.seq} links to a hash it no longer has",
            )
        original = _original_seq(entry, anchored)
        if original is not None:
            return (
                AuditProblem.DELETED,
                entry.seq,
                f"{original - entry.seq} entr{'y' if original - entry.seq == 1 else 'ies'} "
                f"before this one deleted and the rest renumbered: entry {entry.seq} "
                f"was written as entry {original}",
            )
        return (
            AuditProblem.ALTERED,
            entry.seq,
            f"entry {entry.seq} does not match its hash and does not link to entry {entry.seq - 1}",
        )
    return (
        AuditProblem.ALTERED,
        entry.seq,
        f"entry {entry.seq} does not match its hash: its content was changed",
    )


def _original_seq(entry: AuditEntry, anchored: int | None) -> int | None:
    """The later seq under which ``entry``'s stored hash is valid, if any."""
    last = entry.seq + _MAX_RENUMBER_SEARCH
    if anchored is not None:
        last = min(last, max(anchored, entry.seq))
    for seq in range(entry.seq + 1, last + 1):
        if entry.recomputed_hash(seq=seq) == entry.hash:
            return seq
    return None
