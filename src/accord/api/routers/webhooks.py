"""Webhook ingress: ``POST /v1/webhooks/{system}``.

The system's connector verifies the delivery's signature (Stripe's
``Stripe-Signature``, …) — that signature, not an API key, authenticates the
vendor. Each event of the delivery is then accepted into the inbox, keyed by
the vendor's event id, with the request's trace id; a redelivery is
acknowledged (200) and ignored. Nothing else happens in the request: the
workers apply the events.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from accord.api.context import ApiContext, access, context
from accord.api.governance import PUBLIC
from accord.api.problems import Problem
from accord.connectors.base import NotSupported, WebhookEvent
from accord.errors import InvalidInput
from accord.store import Inbox

__all__ = ["router"]

router = APIRouter()


class WebhookOut(BaseModel):
    received: int
    accepted: int
    duplicates: int
    trace_id: str


_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object"}}},
        "description": "The vendor's delivery, byte for byte as signed.",
    }
}


@router.post(
    "/webhooks/{system}",
    response_model=WebhookOut,
    tags=["webhooks"],
    summary="Receive a signed webhook delivery from a system",
    operation_id="receive_webhook",
    openapi_extra={**access(PUBLIC), **_BODY, "x-accord-auth": "vendor signature"},
)
async def receive(
    system: Annotated[str, Path(min_length=1, max_length=100)],
    request: Request,
    ctx: Annotated[ApiContext, Depends(context)],
) -> WebhookOut:
    factory = ctx.verifiers.get(system)
    if factory is None:
        raise Problem(404, "not-found", f"no webhooks are configured for system {system!r}")
    body = await request.body()
    try:
        verifier = factory()
    except InvalidInput as exc:
        raise Problem(
            503, "webhooks-not-configured", f"webhooks of {system!r} are not configured: {exc}"
        ) from None
    try:
        events = verifier.verify_webhook(dict(request.headers), body, ctx.clock())
    except NotSupported as exc:
        raise Problem(404, "not-found", str(exc)) from None
    except InvalidInput as exc:
        where = ".".join(p for p in (exc.record, exc.field) if p)
        if exc.record == "webhook" and exc.field:
            raise Problem(
                401,
                "bad-signature",
                f"{system} delivery refused: {exc.message}",
                errors=[(f"header.{exc.field}", exc.message)],
            ) from None
        raise Problem(
            400,
            "bad-delivery",
            f"{system} delivery refused: {exc}",
            errors=[(where or "body", exc.message)],
        ) from None
    trace_id = str(request.scope["state"]["trace_id"])
    accepted = await run_in_threadpool(_accept, ctx, system, events, trace_id)
    return WebhookOut(
        received=len(events),
        accepted=accepted,
        duplicates=len(events) - accepted,
        trace_id=trace_id,
    )


def _accept(ctx: ApiContext, system: str, events: Sequence[WebhookEvent], trace_id: str) -> int:
    """Store the delivery's events in the inbox in one transaction; returns how many were new."""
    accepted = 0
    with ctx.engine.begin() as conn:
        inbox = Inbox(conn, ctx.clock)
        for event in events:
            payload = {
                "object": event.object,
                "data": dict(event.data),
                "occurred_at": event.occurred_at.isoformat() if event.occurred_at else None,
            }
            if inbox.accept(
                system,
                event.event_id,
                event_type=event.event_type,
                payload=payload,
                trace_id=trace_id,
            ):
                accepted += 1
    return accepted
