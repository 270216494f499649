"""``/v1/traces/{id}``: everything that shares one business trace id.

A trace is read from what the store keeps with a trace id: the inbound events
(inbox), the record versions they produced, the effects sent, the exception
items raised, and the audit entries about those versions and API actions.
The answer is a ``timeline`` (every step in time order, each with a ``kind``
and its details) plus the records touched — a structure that new kinds of
step can join without changing its shape.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel
from sqlalchemy import select

from accord.api.auth import Permission
from accord.api.context import ApiContext, access, context
from accord.api.problems import Problem
from accord.store.tables import audit_log, effects, exceptions, inbox, record_versions

__all__ = ["router"]

router = APIRouter(tags=["traces"])


class TraceStep(BaseModel):
    at: datetime
    kind: str
    """``event_received``, ``record_changed``, ``effect``, ``exception`` or ``audit``."""
    subject: str
    summary: str
    detail: dict[str, Any]


class TraceRecord(BaseModel):
    entity_type: str
    id: str
    versions: list[int]


class TraceOut(BaseModel):
    trace_id: str
    started_at: datetime
    ended_at: datetime
    timeline: list[TraceStep]
    records: list[TraceRecord]


@router.get(
    "/traces/{trace_id}",
    response_model=TraceOut,
    summary="One business trace: events, record versions, effects, exceptions, audit",
    operation_id="get_trace",
    openapi_extra=access(Permission.READ_RECORDS),
)
def get_trace(
    trace_id: Annotated[str, Path(min_length=1, max_length=200)],
    ctx: Annotated[ApiContext, Depends(context)],
) -> TraceOut:
    steps: list[TraceStep] = []
    touched: dict[tuple[str, str], list[int]] = {}
    with ctx.engine.connect() as conn:
        for row in conn.execute(select(inbox).where(inbox.c.trace_id == trace_id)):
            steps.append(
                TraceStep(
                    at=row.received_at,
                    kind="event_received",
                    subject=f"{row.system}:{row.event_id}",
                    summary=f"{row.event_type} from {row.system} ({row.status})",
                    detail={
                        "seq": row.seq,
                        "status": row.status,
                        "attempts": row.attempts,
                        "error": row.error,
                        "processed_at": row.processed_at.isoformat() if row.processed_at else None,
                    },
                )
            )
        for row in conn.execute(
            select(record_versions).where(record_versions.c.trace_id == trace_id)
        ):
            touched.setdefault((row.entity_type, row.id), []).append(row.version)
            steps.append(
                TraceStep(
                    at=row.at,
                    kind="record_changed",
                    subject=f"{row.entity_type}/{row.id}",
                    summary=f"version {row.version} from {row.system}: "
                    + (", ".join(row.changed_fields) or "no field"),
                    detail={
                        "version": row.version,
                        "changed_fields": row.changed_fields,
                        "system": row.system,
                        "actor": row.actor,
                    },
                )
            )
        for row in conn.execute(select(effects).where(effects.c.trace_id == trace_id)):
            steps.append(
                TraceStep(
                    at=row.created_at,
                    kind="effect",
                    subject=row.idempotency_key,
                    summary=f"{row.operation} on {row.system}: {row.status}",
                    detail={
                        "system": row.system,
                        "operation": row.operation,
                        "status": row.status,
                        "attempts": row.attempts,
                        "external_id": row.external_id,
                        "error": row.error,
                        "updated_at": row.updated_at.isoformat(),
                    },
                )
            )
        for row in conn.execute(select(exceptions).where(exceptions.c.trace_id == trace_id)):
            steps.append(
                TraceStep(
                    at=row.created_at,
                    kind="exception",
                    subject=f"exception/{row.id}",
                    summary=f"{row.type} for {row.role}: {row.summary}",
                    detail={"type": row.type, "role": row.role, "state": row.state},
                )
            )
        subjects = [f"{entity}/{id}" for entity, id in touched]
        audit_rows: list[Any] = []
        for start in range(0, len(subjects), 500):
            audit_rows.extend(
                conn.execute(
                    select(audit_log).where(audit_log.c.subject.in_(subjects[start : start + 500]))
                )
            )
        for row in audit_rows:
            entity, _, id = row.subject.partition("/")
            if row.data.get("version") not in touched.get((entity, id), []):
                continue
            steps.append(_audit_step(row))
        exception_subjects = [s.subject for s in steps if s.kind == "exception"]
        if exception_subjects:
            for row in conn.execute(
                select(audit_log).where(audit_log.c.subject.in_(exception_subjects))
            ):
                steps.append(_audit_step(row))
    if not steps:
        raise Problem(404, "not-found", f"nothing is recorded under trace {trace_id!r}")
    steps.sort(key=lambda s: (s.at, s.kind))
    return TraceOut(
        trace_id=trace_id,
        started_at=steps[0].at,
        ended_at=steps[-1].at,
        timeline=steps,
        records=[
            TraceRecord(entity_type=e, id=i, versions=sorted(v)) for (e, i), v in touched.items()
        ],
    )


def _audit_step(row: Any) -> TraceStep:
    return TraceStep(
        at=row.at,
        kind="audit",
        subject=row.subject,
        summary=f"{row.action} by {row.actor}",
        detail={"seq": row.seq, "action": row.action, "actor": row.actor, "hash": row.hash},
    )
