"""Reconciliation results in the store: runs and their discrepancies, queryable.

Like the other repositories it works inside a transaction the caller owns::

    with engine.begin() as conn:
        runs = ReconcileRuns(conn)
        latest = runs.latest("invoices")
        open_items = runs.discrepancies(latest.id, category="amount_mismatch")
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, func, insert, select

from accord.reconcile.model import jsonable
from accord.store.audit import json_document
from accord.store.reconcile_tables import reconcile_discrepancies, reconcile_runs
from accord.store.repo import Clock, utc_now

__all__ = ["ReconcileRuns", "StoredDiscrepancy", "StoredRun"]

_d = reconcile_discrepancies.c
_r = reconcile_runs.c


@dataclass(frozen=True, slots=True)
class StoredRun:
    id: str
    pair: str
    state: str
    started_at: datetime
    finished_at: datetime | None
    left_name: str
    right_name: str
    left_rows: int
    right_rows: int
    counts: dict[str, int]
    totals: dict[str, Any]
    trace_id: str | None
    error: str | None


@dataclass(frozen=True, slots=True)
class StoredDiscrepancy:
    run_id: str
    seq: int
    key: str
    category: str
    field: str | None
    left: Any
    right: Any
    owner: str | None
    fix: dict[str, Any]
    state: str
    effect_key: str | None
    exception_id: str | None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"key": self.key, "class": self.category}
        if self.field is not None:
            doc["field"] = self.field
        doc.update(left=self.left, right=self.right, owner=self.owner, fix=self.fix)
        doc.update(state=self.state, effect_key=self.effect_key, exception_id=self.exception_id)
        return doc


class ReconcileRuns:
    """Write and query reconciliation runs."""

    def __init__(self, conn: Connection, clock: Clock = utc_now) -> None:
        self._conn = conn
        self._clock = clock

    def start(
        self, run_id: str, pair: str, *, left: str, right: str, trace_id: str | None = None
    ) -> None:
        """Record that a run began (so a crashed run is visible as ``running``).

        Starting a run id already stored is a retry of that run (a scheduled
        step resumed after a crash): its earlier outcome is cleared and it runs
        again under the same id.
        """
        if self.get(run_id) is not None:
            self._conn.execute(reconcile_discrepancies.delete().where(_d.run_id == run_id))
            self._conn.execute(
                reconcile_runs.update()
                .where(_r.id == run_id)
                .values(state="running", finished_at=None, error=None, trace_id=trace_id)
            )
            return
        self._conn.execute(
            insert(reconcile_runs).values(
                id=run_id,
                pair=pair,
                state="running",
                started_at=self._clock(),
                left_name=left,
                right_name=right,
                left_rows=0,
                right_rows=0,
                counts={},
                totals={},
                trace_id=trace_id,
            )
        )

    def finish(
        self,
        run_id: str,
        *,
        left_rows: int,
        right_rows: int,
        counts: dict[str, int],
        totals: dict[str, Any],
        discrepancies: Sequence[dict[str, Any]],
    ) -> None:
        """Store the outcome and every discrepancy (each a :meth:`row` mapping)."""
        self._conn.execute(
            reconcile_runs.update()
            .where(_r.id == run_id)
            .values(
                state="finished",
                finished_at=self._clock(),
                left_rows=left_rows,
                right_rows=right_rows,
                counts=counts,
                totals=json_document(totals),
            )
        )
        rows = [{"run_id": run_id, "seq": n, **item} for n, item in enumerate(discrepancies, 1)]
        for start in range(0, len(rows), 1000):
            self._conn.execute(insert(reconcile_discrepancies), rows[start : start + 1000])

    def fail(self, run_id: str, error: str) -> None:
        self._conn.execute(
            reconcile_runs.update()
            .where(_r.id == run_id)
            .values(state="failed", finished_at=self._clock(), error=error)
        )

    @staticmethod
    def row(
        *,
        key: str,
        category: str,
        field: str | None,
        left: Any,
        right: Any,
        owner: str | None,
        fix: dict[str, Any],
        state: str,
        effect_key: str | None = None,
        exception_id: str | None = None,
    ) -> dict[str, Any]:
        """One discrepancy as :meth:`finish` stores it (values wrapped as documents)."""
        return {
            "key": key,
            "class": category,
            "field": field,
            "left": json_document({"value": jsonable(left)}),
            "right": json_document({"value": jsonable(right)}),
            "owner": owner,
            "fix": json_document(fix),
            "state": state,
            "effect_key": effect_key,
            "exception_id": exception_id,
        }

    def get(self, run_id: str) -> StoredRun | None:
        row = self._conn.execute(select(reconcile_runs).where(_r.id == run_id)).one_or_none()
        return None if row is None else _run(row)

    def list(self, pair: str | None = None, *, limit: int = 50) -> builtins.list[StoredRun]:
        """Runs newest first, optionally of one pair."""
        query = select(reconcile_runs).order_by(_r.started_at.desc(), _r.id.desc()).limit(limit)
        if pair is not None:
            query = query.where(_r.pair == pair)
        return [_run(row) for row in self._conn.execute(query)]

    def latest(self, pair: str) -> StoredRun | None:
        runs = self.list(pair, limit=1)
        return runs[0] if runs else None

    def discrepancies(
        self,
        run_id: str,
        *,
        category: str | None = None,
        state: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> builtins.list[StoredDiscrepancy]:
        """The discrepancies of a run in reported order, filtered by class and state."""
        query = select(reconcile_discrepancies).where(_d.run_id == run_id)
        if category is not None:
            query = query.where(_d["class"] == category)
        if state is not None:
            query = query.where(_d.state == state)
        query = query.order_by(_d.seq).offset(offset)
        if limit is not None:
            query = query.limit(limit)
        return [_discrepancy(row) for row in self._conn.execute(query)]

    def count(self, run_id: str) -> int:
        query = select(func.count()).select_from(reconcile_discrepancies)
        return int(self._conn.execute(query.where(_d.run_id == run_id)).scalar_one())


def _run(row: Row[Any]) -> StoredRun:
    return StoredRun(
        id=row.id,
        pair=row.pair,
        state=row.state,
        started_at=row.started_at,
        finished_at=row.finished_at,
        left_name=row.left_name,
        right_name=row.right_name,
        left_rows=row.left_rows,
        right_rows=row.right_rows,
        counts=dict(row.counts),
        totals=dict(row.totals),
        trace_id=row.trace_id,
        error=row.error,
    )


def _discrepancy(row: Row[Any]) -> StoredDiscrepancy:
    mapping = row._mapping
    return StoredDiscrepancy(
        run_id=mapping["run_id"],
        seq=mapping["seq"],
        key=mapping["key"],
        category=mapping["class"],
        field=mapping["field"],
        left=mapping["left"].get("value"),
        right=mapping["right"].get("value"),
        owner=mapping["owner"],
        fix=dict(mapping["fix"]),
        state=mapping["state"],
        effect_key=mapping["effect_key"],
        exception_id=mapping["exception_id"],
    )
