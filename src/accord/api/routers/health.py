"""Liveness, readiness and metrics: open without a credential, outside ``/v1``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from sqlalchemy import text
from starlette.responses import Response

from accord.api.context import ApiContext, access, context
from accord.api.governance import PUBLIC
from accord.api.problems import Problem
from accord.store import current_revision, head_revision

__all__ = ["router"]

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    checks: dict[str, str] = {}


@router.get(
    "/healthz",
    response_model=Health,
    summary="The process is up",
    operation_id="healthz",
    openapi_extra=access(PUBLIC),
)
def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    summary="Ready to serve: database reachable, schema current, workers running",
    operation_id="readyz",
    openapi_extra=access(PUBLIC),
)
def readyz(ctx: Annotated[ApiContext, Depends(context)]) -> Health:
    checks: dict[str, str] = {}
    try:
        with ctx.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
        revision = current_revision(ctx.engine)
        head = head_revision()
        checks["schema"] = "ok" if revision == head else f"at {revision}, expected {head}"
    except Exception as exc:  # any failure to reach the database means not ready
        checks["database"] = f"unreachable: {type(exc).__name__}"
    if ctx.hub is not None:
        alive = [t for t in ctx.hub.worker._threads if t.is_alive()]
        checks["workers"] = "ok" if alive else "stopped"
    failing = {k: v for k, v in checks.items() if v != "ok"}
    if failing:
        raise Problem(
            503,
            "not-ready",
            "; ".join(f"{k}: {v}" for k, v in failing.items()),
            headers={"Retry-After": "5"},
        )
    return Health(status="ok", checks=checks)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    operation_id="metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
    openapi_extra=access(PUBLIC),
)
async def metrics(request: Request) -> Response:
    registry = request.app.state.metrics
    body = await run_in_threadpool(generate_latest, registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
