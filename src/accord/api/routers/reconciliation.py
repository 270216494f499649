"""Reconciliation runs and their discrepancies, read from the store."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel

from accord.api.auth import Permission
from accord.api.context import ApiContext, access, context
from accord.api.problems import Problem
from accord.reconcile.store import ReconcileRuns, StoredRun

__all__ = ["router"]

router = APIRouter(tags=["reconciliation"])


class RunOut(BaseModel):
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


class RunDetail(BaseModel):
    run: RunOut
    discrepancies: list[dict[str, Any]]
    total: int


def _run(run: StoredRun) -> RunOut:
    return RunOut.model_validate(run, from_attributes=True)


@router.get(
    "/reconciliation/runs",
    response_model=list[RunOut],
    summary="Reconciliation runs, newest first",
    operation_id="list_reconciliation_runs",
    openapi_extra=access(Permission.READ_RECORDS),
)
def list_runs(
    ctx: Annotated[ApiContext, Depends(context)],
    pair: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[RunOut]:
    with ctx.engine.connect() as conn:
        return [_run(run) for run in ReconcileRuns(conn, ctx.clock).list(pair, limit=limit)]


@router.get(
    "/reconciliation/runs/{id}",
    response_model=RunDetail,
    summary="One run with its discrepancies (page with offset and limit)",
    operation_id="get_reconciliation_run",
    openapi_extra=access(Permission.READ_RECORDS),
)
def get_run(
    id: Annotated[str, Path(min_length=1, max_length=200)],
    ctx: Annotated[ApiContext, Depends(context)],
    category: Annotated[str | None, Query(max_length=100, alias="class")] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> RunDetail:
    with ctx.engine.connect() as conn:
        runs = ReconcileRuns(conn, ctx.clock)
        run = runs.get(id)
        if run is None:
            raise Problem(404, "not-found", f"no reconciliation run {id!r}")
        found = runs.discrepancies(id, category=category, limit=limit, offset=offset)
        total = runs.count(id)
    return RunDetail(run=_run(run), discrepancies=[d.to_json() for d in found], total=total)
