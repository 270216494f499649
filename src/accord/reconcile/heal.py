"""Healing: a proposed fix for every discrepancy, applied where the policy allows.

The ownership policy decides, per field (and per object for whole records):

* a field that differs → copy the owner's value to the other side;
* a record missing on the right → create it there from the owner's record;
* an orphan (on the right only) → flag it; nothing is ever deleted.

Where the mode is ``auto`` and the fix writes to a system, it is applied as an
idempotent effect through the runtime's :class:`~accord.runtime.effects.EffectExecutor`
(the key derived from the run, pair, record, field and value: a retry of one
run never writes twice, while the same drift found again by a later run is
written again) carrying the run's trace id. Everything else becomes an item in
the exception queue for the owning role, deduplicated per record and field so
that the next run does not open it again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from accord.errors import AccordError
from accord.ownership.policy import Mode, OwnershipPolicy
from accord.reconcile.model import Discrepancy, DiscrepancyClass, jsonable
from accord.reconcile.pairs import Pair
from accord.runtime.effects import Effect, EffectExecutor, effect_key, request_digest

__all__ = [
    "ExceptionSink",
    "Fix",
    "FixAction",
    "Healed",
    "Healer",
    "propose",
]


class FixAction(StrEnum):
    COPY = "copy"
    """Write the owner's value of one field to the other side."""
    CREATE = "create"
    """Create the missing record on the right from the owner's record."""
    FLAG = "flag"
    """Nothing to write: a person decides (orphans, owners outside the pair)."""


@dataclass(frozen=True, slots=True)
class Fix:
    """What would make the two sides agree, and whether it may be done unasked."""

    action: FixAction
    mode: Mode
    """``auto``: applied as an effect; ``review``: an exception for the owner's role."""
    owner: str | None
    """The system whose value wins."""
    target: str | None = None
    """The system written to (``None`` for a flag)."""
    data: Mapping[str, Any] = field(default_factory=dict)
    """The fields written."""

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action.value,
            "mode": self.mode.value,
            "owner": self.owner,
            "target": self.target,
            "data": jsonable(dict(self.data)),
        }


def propose(
    pair: Pair, policy: OwnershipPolicy, item: Discrepancy, systems: tuple[str, str]
) -> Fix:
    """The fix of one discrepancy under ``policy``."""
    left, right = systems
    if item.category is DiscrepancyClass.ORPHAN:
        return Fix(FixAction.FLAG, Mode.REVIEW, item.owner)
    if item.category is DiscrepancyClass.MISSING:
        mode = pair.record_mode(policy) if pair.create_missing else Mode.REVIEW
        if item.owner != left:
            mode = Mode.REVIEW
        record = dict(item.left or {})
        return Fix(FixAction.CREATE, mode, item.owner, right, record)
    assert item.field is not None
    owner = item.owner
    if owner == left:
        target, value = right, item.left
    elif owner == right:
        target, value = left, item.right
    else:
        return Fix(FixAction.FLAG, Mode.REVIEW, owner)
    mode = policy.mode_of(pair.entity_type, item.field) if pair.auto_copy else Mode.REVIEW
    return Fix(FixAction.COPY, mode, owner, target, {item.field: value})


class ExceptionSink(Protocol):
    """Where review items go: :class:`accord.store.Exceptions` has this shape."""

    def raise_(
        self,
        type: str,
        *,
        role: str,
        summary: str,
        context: Mapping[str, Any] | None = None,
        dedupe_key: str | None = None,
        trace_id: str | None = None,
    ) -> Any: ...


@dataclass(frozen=True, slots=True)
class Healed:
    """What became of one discrepancy."""

    fix: Fix
    state: str
    """``healed``, ``exception`` or ``open`` (healing not asked for)."""
    effect_key: str | None = None
    exception_id: str | None = None


class Healer:
    """Applies fixes: effects for ``auto``, exception items for the rest.

    :meth:`apply` performs the effect of an ``auto`` fix (the ledger commits on
    its own, outside any store transaction); :meth:`escalate` opens the
    exception item of a fix that needs a person, or of one whose effect failed.
    """

    def __init__(self, policy: OwnershipPolicy, executor: EffectExecutor | None) -> None:
        self.policy = policy
        self.executor = executor

    def role_of(self, system: str | None) -> str:
        """The first role ``system`` plays (exception items are owned by roles)."""
        for role, name in self.policy.systems.items():
            if name == system:
                return role
        return "admin"

    def automatic(self, fix: Fix) -> bool:
        """Whether ``fix`` is applied without asking anyone."""
        return fix.mode is Mode.AUTO and fix.target is not None and self.executor is not None

    def apply(
        self,
        pair: Pair,
        item: Discrepancy,
        fix: Fix,
        *,
        trace_id: str | None = None,
        run_id: str = "",
    ) -> Healed | str:
        """Perform an ``auto`` fix; the outcome, or the failure text to escalate."""
        assert self.executor is not None
        effect = self.effect(pair, item, fix, trace_id, run_id=run_id)
        try:
            self.executor.execute(effect)
        except AccordError as exc:
            return str(exc)
        return Healed(fix, "healed", effect_key=effect.key)

    def effect(
        self,
        pair: Pair,
        item: Discrepancy,
        fix: Fix,
        trace_id: str | None,
        *,
        run_id: str = "",
    ) -> Effect:
        """The idempotent effect of a fix that writes.

        The key covers the run as well as the record, field and value: a retry
        of the same run (a crashed scheduled step resumed) finds the ledger's
        entry and writes nothing again, while a later run that meets the same
        drift once more (someone set the old value back) writes it again rather
        than replaying the first run's result.
        """
        assert fix.target is not None
        data = jsonable(dict(fix.data))
        operation = "create" if fix.action is FixAction.CREATE else "update"
        request = {
            "object": pair.entity_type,
            "operation": operation,
            "external_id": item.key,
            "data": data,
        }
        key = effect_key(
            fix.target,
            f"reconcile.{operation}",
            pair.entity_type,
            item.key,
            item.field or "",
            request_digest(data)[:16],
            run_id,
        )
        return Effect(fix.target, f"reconcile.{operation}", key, request, trace_id)

    def escalate(
        self,
        sink: ExceptionSink,
        pair: Pair,
        item: Discrepancy,
        fix: Fix,
        *,
        trace_id: str | None = None,
        failure: str | None = None,
    ) -> Healed:
        """Open (or find again) the exception item of one discrepancy."""
        what = item.category.value + (f" in {item.field}" if item.field else "")
        summary = f"{pair.name}: {pair.entity_type} {item.key}: {what}"
        if failure is not None:
            summary += f" (automatic fix failed: {failure})"
        context: dict[str, Any] = {
            "pair": pair.name,
            "key": item.key,
            "class": item.category.value,
            "field": item.field,
            "left": jsonable(item.left),
            "right": jsonable(item.right),
            "fix": fix.to_json(),
        }
        if failure is not None:
            context["failure"] = failure
        raised = sink.raise_(
            f"reconcile.{item.category.value}",
            role=self.role_of(fix.owner or item.owner),
            summary=summary,
            context=context,
            dedupe_key=f"reconcile:{pair.name}:{item.key}:{item.field or ''}:{item.category.value}",
            trace_id=trace_id,
        )
        return Healed(fix, "exception", exception_id=str(getattr(raised, "id", raised)))
