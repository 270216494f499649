"""Operations: dead letters and their replay, the audit log and its chain."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from accord.api.auth import Permission, Principal
from accord.api.context import ApiContext, access, context, principal
from accord.api.routers.exceptions import replay_item
from accord.store import entries, verify

__all__ = ["router"]

router = APIRouter()


class DeadLetterOut(BaseModel):
    id: str
    kind: str
    reason: str
    age_seconds: float | None
    context: dict[str, Any]


class ReplayOut(BaseModel):
    id: str
    result: dict[str, Any]


class AuditEntryOut(BaseModel):
    seq: int
    at: datetime
    actor: str
    action: str
    subject: str
    data: dict[str, Any]
    hash: str


class AuditVerifyOut(BaseModel):
    ok: bool
    checked: int
    anchored_count: int | None
    head_hash: str | None
    problem: str | None
    seq: int | None
    detail: str


@router.get(
    "/dead-letters",
    response_model=list[DeadLetterOut],
    tags=["dead letters"],
    summary="Open dead letters: events, effects and workflows that failed, with reasons",
    operation_id="list_dead_letters",
    openapi_extra=access(Permission.READ_OPERATIONS),
)
def list_dead_letters(ctx: Annotated[ApiContext, Depends(context)]) -> list[DeadLetterOut]:
    from accord.runtime.dlq import dead_letters

    letters = dead_letters(ctx.engine, include_workflows=ctx.hub is not None)
    return [
        DeadLetterOut(
            id=d.id,
            kind=d.kind,
            reason=d.reason,
            age_seconds=d.age.total_seconds() if d.age is not None else None,
            context=d.context,
        )
        for d in letters
    ]


@router.post(
    "/dead-letters/{id}/replay",
    response_model=ReplayOut,
    tags=["dead letters"],
    summary="Replay a dead letter after the fix",
    operation_id="replay_dead_letter",
    openapi_extra=access(Permission.REPLAY),
)
async def replay_dead_letter(
    id: Annotated[str, Path(min_length=1, max_length=200)],
    ctx: Annotated[ApiContext, Depends(context)],
    caller: Annotated[Principal, Depends(principal)],
) -> ReplayOut:
    result = await run_in_threadpool(replay_item, ctx, caller, id)
    return ReplayOut(id=id, result=result)


@router.get(
    "/audit",
    response_model=list[AuditEntryOut],
    tags=["audit"],
    summary="Audit entries in order (page with `after_seq`)",
    operation_id="list_audit",
    openapi_extra=access(Permission.READ_OPERATIONS),
)
def list_audit(
    ctx: Annotated[ApiContext, Depends(context)],
    after_seq: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    subject: Annotated[str | None, Query(max_length=300)] = None,
) -> list[AuditEntryOut]:
    with ctx.engine.connect() as conn:
        found = entries(conn, subject=subject, after_seq=after_seq, limit=limit)
    return [
        AuditEntryOut(
            seq=e.seq,
            at=e.at,
            actor=e.actor,
            action=e.action,
            subject=e.subject,
            data=e.data,
            hash=e.hash,
        )
        for e in found
    ]


@router.get(
    "/audit/verify",
    response_model=AuditVerifyOut,
    tags=["audit"],
    summary="Whether the audit log's hash chain is intact",
    operation_id="verify_audit",
    openapi_extra=access(Permission.READ_OPERATIONS),
)
def verify_audit(ctx: Annotated[ApiContext, Depends(context)]) -> AuditVerifyOut:
    with ctx.engine.connect() as conn:
        report = verify(conn)
    return AuditVerifyOut(
        ok=report.ok,
        checked=report.checked,
        anchored_count=report.anchored_count,
        head_hash=report.head_hash,
        problem=report.problem.value if report.problem else None,
        seq=report.seq,
        detail=report.detail,
    )
