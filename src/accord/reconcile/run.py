"""One reconciliation run: compare, propose, heal, store.

    compare the two sides ─▶ a fix per discrepancy (ownership policy)
        ─▶ auto: idempotent effect, ledger first (outside any store transaction)
        ─▶ review (or a failed effect): exception item for the owning role
        ─▶ the run and every discrepancy stored, in one transaction

Each run has an id and a trace id carried by every effect and exception item
it causes. A second run after the effects landed finds nothing: the engine
compares what the systems hold now.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from accord.domain.ids import new_id
from accord.ownership.policy import Mode, OwnershipPolicy
from accord.reconcile.engine import compare
from accord.reconcile.heal import ExceptionSink, Fix, FixAction, Healed, Healer, propose
from accord.reconcile.model import Comparison, Discrepancy
from accord.reconcile.pairs import Pair
from accord.reconcile.sides import Side
from accord.reconcile.store import ReconcileRuns
from accord.runtime.effects import EffectExecutor
from accord.store.repo import Clock, Exceptions, utc_now

__all__ = ["RunReport", "reconcile_pair", "store_comparison"]


@dataclass(slots=True)
class RunReport:
    """A finished run: the comparison and what became of each discrepancy."""

    run_id: str
    pair: str
    trace_id: str
    started_at: datetime
    comparison: Comparison
    outcomes: list[Healed] = field(default_factory=list)
    not_comparable: list[dict[str, str]] = field(default_factory=list)
    """Records a side left out because they cannot be compared (``side``, ``key``, ``reason``)."""

    @property
    def counts(self) -> dict[str, int]:
        return self.comparison.counts

    @property
    def healed(self) -> int:
        return sum(1 for o in self.outcomes if o.state == "healed")

    @property
    def escalated(self) -> int:
        return sum(1 for o in self.outcomes if o.state == "exception")

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"run_id": self.run_id, "pair": self.pair, "trace_id": self.trace_id}
        doc.update(self.comparison.to_json())
        for item, outcome in zip(doc["discrepancies"], self.outcomes, strict=True):
            item["fix"] = outcome.fix.to_json()
            item["state"] = outcome.state
            if outcome.effect_key:
                item["effect_key"] = outcome.effect_key
            if outcome.exception_id:
                item["exception_id"] = outcome.exception_id
        doc["healed"] = self.healed
        doc["exceptions"] = self.escalated
        if self.not_comparable:
            doc["not_comparable"] = list(self.not_comparable)
        return doc


def _row(item: Discrepancy, outcome: Healed) -> dict[str, Any]:
    return ReconcileRuns.row(
        key=item.key,
        category=item.category.value,
        field=item.field,
        left=item.left,
        right=item.right,
        owner=item.owner,
        fix=outcome.fix.to_json(),
        state=outcome.state,
        effect_key=outcome.effect_key,
        exception_id=outcome.exception_id,
    )


def reconcile_pair(
    pair: Pair,
    left: Side,
    right: Side,
    *,
    policy: OwnershipPolicy,
    engine: Engine | None = None,
    executor: EffectExecutor | None = None,
    exceptions: ExceptionSink | None = None,
    heal: bool = True,
    trace_id: str | None = None,
    run_id: str | None = None,
    clock: Clock = utc_now,
) -> RunReport:
    """Run one pair: compare ``left`` (the owner's side) with ``right``, heal, store.

    With ``engine`` the run is stored and review items go to the store's
    exception queue; ``exceptions`` replaces that queue (tests, rehearsal).
    Without ``executor`` nothing is written to a system: ``auto`` fixes become
    exception items too. With ``heal=False`` fixes are only proposed.

    ``run_id`` names the run; giving the id of a run already stored retries
    that run (its fixes' effect keys are the same, so nothing is written
    twice). Without it each call is a new run, and a drift that came back
    since an earlier run is healed again.
    """
    run_id = run_id or new_id()
    trace = trace_id or f"reconcile-{run_id}"
    started = clock()
    systems = pair.systems(policy)
    if engine is not None:
        with engine.begin() as conn:
            ReconcileRuns(conn, clock).start(
                run_id, pair.name, left=left.name, right=right.name, trace_id=trace
            )
    carried = [c for c in (_carries(left), _carries(right)) if c is not None]
    specs = [spec for spec in pair.specs(policy) if all(spec.name in c for c in carried)]
    # totals are grouped only by the columns both sides hold (a PSA knows no invoice period)
    group_by = tuple(name for name in pair.group_by if all(name in c for c in carried))
    try:
        comparison = compare(
            left,
            right,
            specs,
            group_by=group_by,
            record_owner=pair.record_owner(policy),
        )
    except Exception as exc:
        if engine is not None:
            with engine.begin() as conn:
                ReconcileRuns(conn, clock).fail(run_id, str(exc))
        raise
    fixes = [propose(pair, policy, item, systems) for item in comparison.discrepancies]
    healer = Healer(policy, executor)
    outcomes: list[Healed | str | None] = []
    for item, fix in zip(comparison.discrepancies, fixes, strict=True):
        if heal and healer.automatic(fix):
            outcomes.append(healer.apply(pair, item, fix, trace_id=trace, run_id=run_id))
        else:
            outcomes.append(None)

    def settle(sink: ExceptionSink | None) -> list[Healed]:
        settled: list[Healed] = []
        for item, fix, outcome in zip(comparison.discrepancies, fixes, outcomes, strict=True):
            if isinstance(outcome, Healed):
                settled.append(outcome)
            elif not heal or sink is None:
                settled.append(Healed(fix, "open"))
            else:
                failure = outcome if isinstance(outcome, str) else None
                settled.append(
                    healer.escalate(sink, pair, item, fix, trace_id=trace, failure=failure)
                )
        return settled

    report = RunReport(run_id, pair.name, trace, started, comparison)
    report.not_comparable = [*_not_comparable(left), *_not_comparable(right)]
    if engine is None:
        report.outcomes = settle(exceptions)
        return report
    with engine.begin() as conn:
        report.outcomes = settle(exceptions or Exceptions(conn, clock))
        _finish(ReconcileRuns(conn, clock), run_id, comparison, report.outcomes)
    return report


def _not_comparable(side: Side) -> list[dict[str, str]]:
    """What a side left out of the comparison, and why (a side that says)."""
    found = getattr(side, "not_comparable", None)
    if not isinstance(found, dict):
        return []
    return [
        {"side": side.name, "key": str(key), "reason": str(reason)}
        for key, reason in sorted(found.items())
    ]


def _carries(side: Side) -> frozenset[str] | None:
    """The fields a side holds at all (a vendor that keeps no payment terms), if it says."""
    carried = getattr(side, "carries", None)
    return carried if isinstance(carried, frozenset) else None


def _finish(
    runs: ReconcileRuns, run_id: str, comparison: Comparison, outcomes: Sequence[Healed]
) -> None:
    runs.finish(
        run_id,
        left_rows=comparison.left_rows,
        right_rows=comparison.right_rows,
        counts=comparison.counts,
        totals=comparison.to_json()["totals"],
        discrepancies=[
            _row(item, outcome)
            for item, outcome in zip(comparison.discrepancies, outcomes, strict=True)
        ],
    )


def store_comparison(
    engine: Engine, comparison: Comparison, *, pair: str = "files", clock: Clock = utc_now
) -> str:
    """Store a comparison made outside a pair (two exports); returns the run id."""
    run_id = new_id()
    with engine.begin() as conn:
        runs = ReconcileRuns(conn, clock)
        runs.start(run_id, pair, left=comparison.left, right=comparison.right)
        flag = [
            Healed(Fix(FixAction.FLAG, Mode.REVIEW, item.owner), "open")
            for item in comparison.discrepancies
        ]
        _finish(runs, run_id, comparison, flag)
    return run_id
