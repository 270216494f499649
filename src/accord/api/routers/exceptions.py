"""The exception queue as a business process.

Each item has a type, business context (account, project, invoice, amount),
an owning role, a state (open → assigned → resolved or ignored) and an age.
A queue role (finance, pmo, sales_ops) sees and acts on its own queue; admin
on all; auditor reads all. Every action is kept with who and why
(``history``) and is an audit entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Connection, select

from accord.api.auth import QUEUE_ROLES, Permission, Principal
from accord.api.context import ApiContext, access, context, principal
from accord.api.models import (
    ActionOut,
    AssignIn,
    BusinessContext,
    ExceptionAction,
    ExceptionOut,
    ReasonIn,
)
from accord.api.problems import Problem
from accord.errors import InvalidInput
from accord.runtime.pipeline import DEAD_LETTER
from accord.store import ExceptionItem, Exceptions, append
from accord.store.api_tables import API_ROLES, exception_actions
from accord.store.repo import Clock
from accord.store.tables import ExceptionState

__all__ = ["business_context", "router", "take_action"]

router = APIRouter(tags=["exceptions"])

RoleName = Literal["admin", "finance", "pmo", "sales_ops", "auditor", "integration"]
assert set(get_args(RoleName)) == set(API_ROLES)

ItemId = Annotated[str, Path(min_length=1, max_length=200)]


def _text(value: Any) -> str | None:
    return str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None


def business_context(context: Mapping[str, Any]) -> BusinessContext:
    """Account, project, invoice and amount named by an item's context, where it names them."""
    found: dict[str, Any] = {}
    for name in ("account", "project", "invoice"):
        value = context.get(name) or context.get(f"{name}_id")
        if value is None and context.get("entity_type") == name:
            value = context.get("id")
        found[name] = _text(value)
    amount = context.get("amount_minor", context.get("amount"))
    found["amount_minor"] = amount if type(amount) is int else None
    currency = context.get("currency")
    found["currency"] = currency if isinstance(currency, str) else None
    return BusinessContext(**found)


def _history(conn: Connection, item_id: str) -> list[ActionOut]:
    rows = conn.execute(
        select(exception_actions)
        .where(exception_actions.c.exception_id == item_id)
        .order_by(exception_actions.c.seq)
    )
    return [
        ActionOut(action=r.action, actor=r.actor, role=r.role, reason=r.reason, at=r.at)
        for r in rows
    ]


def _out(item: ExceptionItem, history: list[ActionOut]) -> ExceptionOut:
    return ExceptionOut(
        id=item.id,
        type=item.type,
        role=item.role,
        state=item.state.value,
        summary=item.summary,
        business=business_context(item.context),
        context=item.context,
        assignee=item.assignee,
        resolution=item.resolution,
        created_at=item.created_at,
        updated_at=item.updated_at,
        age_seconds=item.age.total_seconds(),
        trace_id=item.trace_id,
        history=history,
    )


def _visible(caller: Principal, item_role: str) -> bool:
    return caller.role not in QUEUE_ROLES or caller.role == item_role


@router.get(
    "/exceptions",
    response_model=list[ExceptionOut],
    summary="The exception queue, oldest first (a queue role sees its own)",
    operation_id="list_exceptions",
    openapi_extra=access(Permission.READ_EXCEPTIONS),
)
def list_items(
    ctx: Annotated[ApiContext, Depends(context)],
    caller: Annotated[Principal, Depends(principal)],
    role: Annotated[
        RoleName | None, Query(description="Owning role; a queue role: its own.")
    ] = None,
    state: Annotated[
        list[ExceptionState] | None, Query(description="Default: open and assigned.")
    ] = None,
    type: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[ExceptionOut]:
    queue: str | None = role
    if caller.role in QUEUE_ROLES:
        if role is not None and role != caller.role:
            raise Problem(403, "forbidden", f"role {caller.role!r} sees only its own queue")
        queue = caller.role
    states = state or [ExceptionState.OPEN, ExceptionState.ASSIGNED]
    with ctx.engine.connect() as conn:
        items = Exceptions(conn, ctx.clock).list(queue, states, type=type, limit=limit)
        return [_out(item, _history(conn, item.id)) for item in items]


@router.get(
    "/exceptions/{id}",
    response_model=ExceptionOut,
    summary="One exception item with its history",
    operation_id="get_exception",
    openapi_extra=access(Permission.READ_EXCEPTIONS),
)
def get_item(
    id: ItemId,
    ctx: Annotated[ApiContext, Depends(context)],
    caller: Annotated[Principal, Depends(principal)],
) -> ExceptionOut:
    with ctx.engine.connect() as conn:
        item = Exceptions(conn, ctx.clock).get(id)
        if item is None or not _visible(caller, item.role):
            raise Problem(404, "not-found", f"no exception item {id!r} in your queue")
        return _out(item, _history(conn, id))


def take_action(
    conn: Connection,
    clock: Clock,
    caller: Principal,
    item_id: str,
    action: str,
    reason: str | None,
    trace_id: str | None,
) -> ExceptionItem:
    """Assign, resolve, ignore or note a retry of an item: its history row and audit entry.

    The one writer of exception actions, for the API and the console alike. For
    ``assign`` the ``reason`` is the assignee; a retry's replay is audited by the
    replay itself, so only its history row is written here.
    """
    queue = Exceptions(conn, clock)
    if action == "assign":
        assert reason is not None
        queue.assign(item_id, reason)
    elif action == "resolve":
        assert reason is not None
        queue.resolve(item_id, reason)
    elif action == "ignore":
        assert reason is not None
        queue.ignore(item_id, reason)
    now = clock()
    conn.execute(
        exception_actions.insert().values(
            exception_id=item_id,
            action=action,
            actor=caller.name,
            role=caller.role,
            reason=reason,
            at=now,
        )
    )
    if action != "retry":
        append(
            conn,
            actor=caller.name,
            action=f"exception.{action}",
            subject=f"exception/{item_id}",
            data={"reason": reason, "role": caller.role, "trace_id": trace_id},
            at=now,
        )
    item = queue.get(item_id)
    assert item is not None
    return item


def _act(
    ctx: ApiContext, caller: Principal, item_id: str, action: str, reason: str | None, trace: str
) -> ExceptionOut:
    with ctx.engine.begin() as conn:
        item = Exceptions(conn, ctx.clock).get(item_id)
        if item is None or not _visible(caller, item.role):
            raise Problem(404, "not-found", f"no exception item {item_id!r} in your queue")
        item = take_action(conn, ctx.clock, caller, item_id, action, reason, trace)
        return _out(item, _history(conn, item_id))


def _trace(request: Request) -> str:
    return str(request.scope["state"]["trace_id"])


@router.post(
    "/exceptions/{id}/assign",
    response_model=ExceptionOut,
    summary="Assign the item to a person",
    operation_id="assign_exception",
    openapi_extra=access(Permission.ACT_EXCEPTIONS),
)
def assign(
    id: ItemId,
    body: AssignIn,
    request: Request,
    ctx: Annotated[ApiContext, Depends(context)],
    caller: Annotated[Principal, Depends(principal)],
) -> ExceptionOut:
    return _act(ctx, caller, id, "assign", body.assignee, _trace(request))


@router.post(
    "/exceptions/{id}/resolve",
    response_model=ExceptionOut,
    summary="Resolve the item, saying what was done",
    operation_id="resolve_exception",
    openapi_extra=access(Permission.ACT_EXCEPTIONS),
)
def resolve(
    id: ItemId,
    body: ReasonIn,
    request: Request,
    ctx: Annotated[ApiContext, Depends(context)],
    caller: Annotated[Principal, Depends(principal)],
) -> ExceptionOut:
    return _act(ctx, caller, id, "resolve", body.reason, _trace(request))


@router.post(
    "/exceptions/{id}/ignore",
    response_model=ExceptionOut,
    summary="Ignore the item, saying why; recurrences stay quiet",
    operation_id="ignore_exception",
    openapi_extra=access(Permission.ACT_EXCEPTIONS),
)
def ignore(
    id: ItemId,
    body: ReasonIn,
    request: Request,
    ctx: Annotated[ApiContext, Depends(context)],
    caller: Annotated[Principal, Depends(principal)],
) -> ExceptionOut:
    return _act(ctx, caller, id, "ignore", body.reason, _trace(request))


@router.post(
    "/exceptions/{id}/retry",
    response_model=ExceptionAction,
    summary="Retry the work behind a dead-letter item (replay it)",
    operation_id="retry_exception",
    openapi_extra=access(Permission.ACT_EXCEPTIONS),
)
async def retry(
    id: ItemId,
    request: Request,
    ctx: Annotated[ApiContext, Depends(context)],
    caller: Annotated[Principal, Depends(principal)],
) -> ExceptionAction:
    result = await run_in_threadpool(replay_item, ctx, caller, id)
    item = await run_in_threadpool(_act, ctx, caller, id, "retry", None, _trace(request))
    return ExceptionAction(item=item, result=result)


def replay_item(ctx: ApiContext, caller: Principal, item_id: str) -> dict[str, Any]:
    """Replay a dead letter for ``caller``; 409 for items that are not dead letters."""
    from accord.runtime.dlq import replay

    with ctx.engine.connect() as conn:
        item = Exceptions(conn, ctx.clock).get(item_id)
    if item is None or not _visible(caller, item.role):
        raise Problem(404, "not-found", f"no exception item {item_id!r} in your queue")
    if item.type != DEAD_LETTER:
        raise Problem(
            409,
            "not-retryable",
            f"a {item.type} item is decided by a person (resolve or ignore), not retried",
        )
    if item.context.get("kind") in ("effect", "workflow") and ctx.hub is None:
        raise Problem(
            503,
            "workers-not-running",
            "replaying an effect or workflow needs the workers; use the API of `accord serve`",
        )
    try:
        return replay(ctx.engine, item_id, actor=caller.name)
    except InvalidInput as exc:
        raise Problem(409, "not-retryable", str(exc)) from None
