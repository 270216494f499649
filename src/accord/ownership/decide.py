"""Applying the ownership policy to changes, and keeping Accord's own echoes out.

Two questions come up for every synchronised field:

* **Inbound** — a system reports a change. Is it the owner's word (apply it),
  another system's opinion (refuse it as an ``ownership_conflict``), or merely
  the echo of something Accord wrote there itself (drop it)? :func:`decide`
  answers per field and returns a :class:`Decision` as data; it changes nothing.
* **Outbound** — the canonical record changed. What must Accord write to each
  system so that it agrees? :func:`outbound` answers: the fields the target does
  not own whose value differs from what the target was last seen holding.

Without echo suppression two systems that both receive writes would ping-pong
forever: Accord writes X to the ERP, the ERP's webhook reports X as a change, and
so on. :class:`EchoMemory` remembers, per system and field, the digest of the
last value Accord wrote that has not come back yet, and the digest of what the
system was last seen holding. The first makes echoes recognisable; the second
lets :func:`outbound` skip writes the target does not need and restore the
owner's value after a refused edit. Values are compared by :func:`digest`, a
hash of canonical JSON, so the memory stores short strings and never data.

The expected use, for each change event read from ``source``::

    decision = decide(policy, "account", current, incoming, source, echo)
    store.apply(decision.changes)                 # the caller's I/O
    queue.raise_all(decision.conflicts)           # the caller's I/O
    record_inbound(echo, decision)
    ...
    for target in systems:
        fields = outbound(policy, "account", store.get(id), target, echo)
        if fields:
            record_outbound(echo, target, "account", id, fields)   # before the call:
            connector.write(target, id, fields)                    # webhooks can beat it

A system's pending changes should be read before Accord writes to it again:
only the last write is remembered per field, so the echo of an earlier,
superseded write would read as an edit.
"""

from __future__ import annotations

import hashlib
import json
import json.encoder
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, is_dataclass
from dataclasses import field as dataclass_field
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum
from types import MappingProxyType
from typing import Any, ClassVar
from uuid import UUID

from accord.errors import InvalidInput
from accord.ownership.policy import ID_FIELD, OwnershipPolicy

__all__ = [
    "Decision",
    "EchoKey",
    "EchoMemory",
    "FieldChange",
    "FieldSync",
    "InMemoryEchoMemory",
    "OwnershipConflict",
    "decide",
    "digest",
    "forget_outbound",
    "outbound",
    "record_inbound",
    "record_outbound",
]


# -- digests ------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A JSON-ready form of ``value`` in which equal values look identical."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise InvalidInput(f"cannot compare a non-finite number ({value!r})")
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise InvalidInput(f"cannot compare a non-finite number ({value!r})")
        # "1.50" and "1.5" are the same amount; keep them the same digest.
        return {"$decimal": format(value.normalize(), "f")}
    if isinstance(value, Enum):
        return _plain(value.value)
    if isinstance(value, datetime | date | time):
        return {"$" + type(value).__name__: value.isoformat()}
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            text = key if isinstance(key, str) else json.dumps(_plain(key), sort_keys=True)
            out[text] = _plain(item)
        return out
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, set | frozenset):
        items = [_plain(item) for item in value]
        return sorted(items, key=lambda item: json.dumps(item, sort_keys=True))
    if is_dataclass(value) and not isinstance(value, type):
        body = {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
        return {"$" + type(value).__name__: body}
    raise InvalidInput(f"cannot compare a value of type {type(value).__name__}")


def digest(value: Any) -> str:
    """A stable fingerprint of ``value``: SHA-256 of its canonical JSON.

    Stable across processes and runs (keys sorted, no whitespace, Decimals
    normalised, dates as ISO text), so a digest stored yesterday still matches
    the same value today. Tuples and lists digest alike because JSON cannot tell
    them apart and neither can most vendor APIs.
    """
    kind = type(value)
    # the common scalars, written as json.dumps would write them, without its set-up
    if kind is str:
        text = _encode_string(value)
    elif kind is int:
        text = int.__repr__(value)
    elif kind is bool:
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    else:
        text = json.dumps(
            _plain(value),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


#: How json.dumps(..., ensure_ascii=False) writes a string.
_encode_string: Callable[[str], str] = json.encoder.encode_basestring


# -- echo memory (port) -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EchoKey:
    """One field of one canonical record as held by one system."""

    system: str
    entity_type: str
    entity_id: str
    """Accord's canonical id, so that inbound and outbound agree on the key."""
    field: str


@dataclass(frozen=True, slots=True)
class FieldSync:
    """What Accord knows about one field in one system, as digests."""

    pending_echo: str | None = None
    """Digest of Accord's last write whose echo has not come back yet."""

    last_seen: str | None = None
    """Digest of the value the system holds as far as Accord knows: the last
    value written there or reported from there, whichever came later."""


class EchoMemory(ABC):
    """The port where Accord keeps :class:`FieldSync` per :class:`EchoKey`.

    An adapter implements two methods, :meth:`load` and :meth:`store` (a dict
    here, a table in ``store/``); the rules — what counts as an echo, when an
    echo is used up — live in the concrete methods so every adapter follows
    them identically.
    """

    @abstractmethod
    def load(self, key: EchoKey) -> FieldSync | None:
        """The state of ``key``, or ``None`` when Accord knows nothing of it."""

    @abstractmethod
    def store(self, key: EchoKey, state: FieldSync) -> None:
        """Replace the state of ``key``."""

    def remember(
        self, system: str, entity_type: str, entity_id: str, field: str, value_digest: str
    ) -> None:
        """Accord wrote the value with ``value_digest`` to ``system``: expect it back.

        Call it before the write is sent: a webhook can arrive before the
        write's response does.
        """
        key = EchoKey(system, entity_type, entity_id, field)
        self.store(key, FieldSync(pending_echo=value_digest, last_seen=value_digest))

    def is_echo(
        self, system: str, entity_type: str, entity_id: str, field: str, value_digest: str
    ) -> bool:
        """Whether ``system`` reporting this value is the echo of Accord's last write.

        True only when the value equals what Accord last wrote to that system for
        that field and that echo has not been seen yet; a value the system sets
        again later, after reporting its own changes, is a genuine change.
        """
        state = self.load(EchoKey(system, entity_type, entity_id, field))
        return state is not None and state.pending_echo == value_digest

    def observe(
        self, system: str, entity_type: str, entity_id: str, field: str, value_digest: str
    ) -> None:
        """``system`` reported holding the value with ``value_digest``.

        It becomes what the system was last seen holding; if it is the pending
        echo, the echo is used up, so the same value reported again later counts
        as a change by the system, not an echo.
        """
        key = EchoKey(system, entity_type, entity_id, field)
        state = self.load(key) or FieldSync()
        pending = None if state.pending_echo == value_digest else state.pending_echo
        self.store(key, FieldSync(pending_echo=pending, last_seen=value_digest))

    def forget(self, system: str, entity_type: str, entity_id: str, field: str) -> None:
        """Accord no longer knows what ``system`` holds (a write failed for good).

        The next :func:`outbound` then writes the field again and no echo is
        expected.
        """
        self.store(EchoKey(system, entity_type, entity_id, field), FieldSync())

    def last_seen(self, system: str, entity_type: str, entity_id: str, field: str) -> str | None:
        """Digest of what ``system`` was last known to hold, or ``None``."""
        state = self.load(EchoKey(system, entity_type, entity_id, field))
        return None if state is None else state.last_seen


class InMemoryEchoMemory(EchoMemory):
    """:class:`EchoMemory` in a dict: for tests, the sandbox and embedded runs."""

    def __init__(self) -> None:
        self._states: dict[EchoKey, FieldSync] = {}

    def load(self, key: EchoKey) -> FieldSync | None:
        return self._states.get(key)

    def store(self, key: EchoKey, state: FieldSync) -> None:
        self._states[key] = state

    def __len__(self) -> int:
        return len(self._states)


# -- decisions ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldChange:
    """A field value to apply to the canonical record."""

    field: str
    value: Any
    provisional: bool = False
    """The value came from a system that does not own the field, accepted only
    because the canonical record had no value for it yet; the owner's first
    value replaces it. Nothing is overruled by filling a gap."""


@dataclass(frozen=True, slots=True)
class OwnershipConflict:
    """A change refused because its source does not own the field.

    It goes to the exception queue as an ``ownership_conflict`` carrying both
    values, so a person can decide whether the owner should adopt the change.
    """

    kind: ClassVar[str] = "ownership_conflict"

    entity_type: str
    entity_id: str
    field: str
    current: Any
    """The canonical (owner's) value that stays; ``None`` if there is none."""
    incoming: Any
    """The value the non-owner tried to set."""
    owner: str
    source: str

    @property
    def message(self) -> str:
        """One line for the exception queue and the logs."""
        return (
            f"{self.entity_type} {self.entity_id}: {self.source} changed {self.field} "
            f"to {self.incoming!r}, but {self.owner} owns it (kept {self.current!r})"
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one incoming change, field by field. Data only."""

    entity_type: str
    entity_id: str
    source: str
    apply: tuple[FieldChange, ...] = ()
    """Fields to write into the canonical record, with their new values."""
    conflicts: tuple[OwnershipConflict, ...] = ()
    """Refused non-owner changes, to raise as ``ownership_conflict`` exceptions."""
    echoes: tuple[str, ...] = ()
    """Fields dropped because they only echo what Accord wrote to the source."""
    unchanged: tuple[str, ...] = ()
    """Fields whose incoming value already equals the canonical one."""
    reported: Mapping[str, str] = dataclass_field(default_factory=lambda: MappingProxyType({}))
    """Digest of every incoming field: what the source now holds. Used by
    :func:`record_inbound`."""

    @property
    def changes(self) -> dict[str, Any]:
        """The fields to apply as a plain ``{field: value}`` mapping."""
        return {change.field: change.value for change in self.apply}

    @property
    def is_noop(self) -> bool:
        """True when nothing is applied and nothing is raised."""
        return not self.apply and not self.conflicts


_MISSING: Any = object()


def _entity_id(explicit: str | None, *records: Mapping[str, Any] | None) -> str:
    if explicit is not None:
        return explicit
    for record in records:
        if record is not None and record.get(ID_FIELD) is not None:
            return str(record[ID_FIELD])
    raise InvalidInput(
        "the canonical id is needed: pass entity_id= or include 'id' in the record",
        record="ownership",
        field=ID_FIELD,
    )


def decide(
    policy: OwnershipPolicy,
    entity_type: str,
    current: Mapping[str, Any] | None,
    incoming: Mapping[str, Any],
    source_system: str,
    echo: EchoMemory,
    *,
    entity_id: str | None = None,
) -> Decision:
    """Sort each incoming field into apply, conflict, echo or unchanged.

    ``current`` is the canonical record (``None`` if it does not exist yet);
    ``incoming`` holds the fields ``source_system`` reports — ideally only those
    it changed, since a stale snapshot of a field it does not own reads as an
    edit. The canonical id is ``entity_id``, else ``incoming["id"]``, else
    ``current["id"]``. For each field, in this order:

    1. the echo of Accord's last write to the source is dropped — whoever owns
       the field, it tells Accord nothing new;
    2. a value equal to the canonical one is unchanged;
    3. the owner's value is applied;
    4. a non-owner's value for a field the canonical record lacks is applied as
       provisional (there is nothing to overrule);
    5. any other non-owner value is a conflict and is not applied.

    The echo memory is only read; call :func:`record_inbound` once the
    decision has been acted on.
    """
    policy.check_system(source_system)
    rules = policy.object(entity_type)
    key = _entity_id(entity_id, incoming, current)
    apply: list[FieldChange] = []
    conflicts: list[OwnershipConflict] = []
    echoes: list[str] = []
    unchanged: list[str] = []
    reported: dict[str, str] = {}
    for name, value in incoming.items():
        if name == ID_FIELD:
            continue
        value_digest = digest(value)
        reported[name] = value_digest
        owner = rules.rule(name).owner
        held = _MISSING if current is None else current.get(name, _MISSING)
        if echo.is_echo(source_system, entity_type, key, name, value_digest):
            echoes.append(name)
        elif held is not _MISSING and digest(held) == value_digest:
            unchanged.append(name)
        elif owner == source_system:
            apply.append(FieldChange(name, value))
        elif held is _MISSING:
            apply.append(FieldChange(name, value, provisional=True))
        else:
            conflicts.append(
                OwnershipConflict(
                    entity_type=entity_type,
                    entity_id=key,
                    field=name,
                    current=held,
                    incoming=value,
                    owner=owner,
                    source=source_system,
                )
            )
    return Decision(
        entity_type=entity_type,
        entity_id=key,
        source=source_system,
        apply=tuple(apply),
        conflicts=tuple(conflicts),
        echoes=tuple(echoes),
        unchanged=tuple(unchanged),
        reported=MappingProxyType(reported),
    )


def record_inbound(echo: EchoMemory, decision: Decision) -> None:
    """Tell the echo memory what the source of ``decision`` now holds.

    Every reported field becomes what the source was last seen holding (so a
    refused edit is undone by the next :func:`outbound`), and echoes are used up
    (so a later genuine change to the same value is not mistaken for one).
    """
    for name, value_digest in decision.reported.items():
        echo.observe(decision.source, decision.entity_type, decision.entity_id, name, value_digest)


def outbound(
    policy: OwnershipPolicy,
    entity_type: str,
    record: Mapping[str, Any],
    target_system: str,
    echo: EchoMemory | None = None,
    *,
    entity_id: str | None = None,
) -> dict[str, Any]:
    """The fields of canonical ``record`` that Accord should write to ``target_system``.

    Only fields the target does not own: the owner's own value is the source of
    truth there, and writing it back would at best echo and at worst clobber a
    newer edit. With ``echo``, fields whose value equals what the target was
    last seen holding are left out too, so an agreeing system gets no write at
    all. Without it every non-owned field is returned (a full push).
    """
    policy.check_system(target_system)
    rules = policy.object(entity_type)
    key = _entity_id(entity_id, record) if echo is not None else ""
    out: dict[str, Any] = {}
    for name, value in record.items():
        if name == ID_FIELD or rules.rule(name).owner == target_system:
            continue
        if echo is not None:
            seen = echo.last_seen(target_system, entity_type, key, name)
            if seen is not None and seen == digest(value):
                continue
        out[name] = value
    return out


def record_outbound(
    echo: EchoMemory,
    target_system: str,
    entity_type: str,
    entity_id: str,
    fields: Mapping[str, Any],
) -> None:
    """Remember a write to ``target_system`` so that its echo is recognised.

    Call it before sending the write (a webhook can beat the response); if the
    write then fails for good, call :func:`forget_outbound` so the next
    :func:`outbound` tries again instead of believing the target has the value.
    """
    for name, value in fields.items():
        if name != ID_FIELD:
            echo.remember(target_system, entity_type, entity_id, name, digest(value))


def forget_outbound(
    echo: EchoMemory,
    target_system: str,
    entity_type: str,
    entity_id: str,
    fields: Mapping[str, Any],
) -> None:
    """Undo :func:`record_outbound` for a write that never reached the target."""
    for name in fields:
        if name != ID_FIELD:
            echo.forget(target_system, entity_type, entity_id, name)
