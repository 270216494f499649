"""Canonical business records: accounts, contracts, projects, time, invoices, payments.

Reads come from the store. Writes are *pushed changes*: a system without
webhooks (or a script) sends a record's fields in canonical form, and the
change is accepted into the inbox like any inbound event — so it is applied by
the same pipeline, under the same ownership rules, with the same audit trail,
exactly once per ``event_id``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from sqlalchemy import select

from accord.api.auth import Permission, Principal
from accord.api.context import ApiContext, access, context, principal
from accord.api.models import LinkOut, PushIn, PushOut, RecordOut, RecordPage, VersionOut
from accord.api.problems import Problem
from accord.domain.ids import deterministic_id
from accord.store import Inbox, Records, StoredRecord, Xref, content_digest
from accord.store.tables import records

__all__ = ["RESOURCES", "router"]

#: URL segment → canonical entity type.
RESOURCES = {
    "accounts": "account",
    "contracts": "contract",
    "projects": "project",
    "time-entries": "time_entry",
    "invoices": "invoice",
    "payments": "payment",
}

router = APIRouter()

RecordId = Annotated[str, Path(min_length=1, max_length=200, description="Accord's record id.")]


def _out(record: StoredRecord, links: list[LinkOut] | None = None) -> RecordOut:
    return RecordOut(
        entity_type=record.entity_type,
        id=record.id,
        version=record.version,
        data=record.data,
        updated_by_system=record.updated_by_system,
        updated_at=record.updated_at,
        links=links or [],
    )


def _register(segment: str, entity_type: str) -> None:
    tag = segment.replace("-", " ")

    @router.get(
        f"/{segment}",
        response_model=RecordPage,
        tags=[tag],
        summary=f"List {tag}",
        operation_id=f"list_{entity_type}",
        openapi_extra=access(Permission.READ_RECORDS),
    )
    def list_records(
        ctx: Annotated[ApiContext, Depends(context)],
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        after: Annotated[
            str | None, Query(max_length=200, description="Id to start after.")
        ] = None,
    ) -> RecordPage:
        query = select(records).where(records.c.entity_type == entity_type)
        if after:
            query = query.where(records.c.id > after)
        query = query.order_by(records.c.id).limit(limit + 1)
        with ctx.engine.connect() as conn:
            rows = conn.execute(query).all()
        items = [
            RecordOut(
                entity_type=row.entity_type,
                id=row.id,
                version=row.version,
                data=row.data,
                updated_by_system=row.updated_by_system,
                updated_at=row.updated_at,
            )
            for row in rows[:limit]
        ]
        more = len(rows) > limit
        return RecordPage(items=items, next_after=items[-1].id if more and items else None)

    @router.get(
        f"/{segment}/{{id}}",
        response_model=RecordOut,
        tags=[tag],
        summary=f"One {entity_type.replace('_', ' ')}, with its ids in every system",
        operation_id=f"get_{entity_type}",
        openapi_extra=access(Permission.READ_RECORDS),
    )
    def get_record(id: RecordId, ctx: Annotated[ApiContext, Depends(context)]) -> RecordOut:
        with ctx.engine.connect() as conn:
            record = Records(conn).get(entity_type, id)
            if record is None:
                raise Problem(404, "not-found", f"no {entity_type} {id!r}")
            links = [
                LinkOut(
                    system=link.system,
                    external_object=link.external_object,
                    external_id=link.external_id,
                    etag=link.etag,
                    last_synced=link.last_synced,
                )
                for link in Xref(conn).links(entity_type, id)
            ]
        return _out(record, links)

    @router.get(
        f"/{segment}/{{id}}/history",
        response_model=list[VersionOut],
        tags=[tag],
        summary="Every version: who changed which fields, from which system, in which trace",
        operation_id=f"history_{entity_type}",
        openapi_extra=access(Permission.READ_RECORDS),
    )
    def history(id: RecordId, ctx: Annotated[ApiContext, Depends(context)]) -> list[VersionOut]:
        with ctx.engine.connect() as conn:
            versions = Records(conn).history(entity_type, id)
        if not versions:
            raise Problem(404, "not-found", f"no {entity_type} {id!r}")
        return [
            VersionOut(
                version=v.version,
                data=v.data,
                changed_fields=list(v.changed_fields),
                system=v.system,
                actor=v.actor,
                trace_id=v.trace_id,
                at=v.at,
            )
            for v in versions
        ]

    @router.post(
        f"/{segment}/changes",
        response_model=PushOut,
        status_code=202,
        tags=[tag],
        summary=f"Push a change of a {entity_type.replace('_', ' ')} on behalf of a system",
        operation_id=f"push_{entity_type}",
        openapi_extra=access(Permission.WRITE_RECORDS),
    )
    def push(
        body: PushIn,
        request: Request,
        ctx: Annotated[ApiContext, Depends(context)],
        caller: Annotated[Principal, Depends(principal)],
    ) -> PushOut:
        idempotency_key = request.headers.get("idempotency-key")
        configured = ctx.settings.systems
        if configured and body.system not in configured:
            raise Problem(
                422,
                "invalid-input",
                f"system {body.system!r} is not configured in accord.yaml",
                errors=[("body.system", f"one of {', '.join(sorted(configured))}")],
            )
        trace_id = str(request.scope["state"]["trace_id"])
        external_object = body.external_object or entity_type
        event_id = body.event_id or deterministic_id(
            "push",
            body.system,
            entity_type,
            body.external_id,
            idempotency_key or content_digest(body.fields),
        )
        payload = {
            "entity_type": entity_type,
            "external_object": external_object,
            "external_id": body.external_id,
            "fields": body.fields,
            "pushed_by": caller.name,
        }
        with ctx.engine.begin() as conn:
            accepted = Inbox(conn, ctx.clock).accept(
                body.system,
                event_id,
                event_type=f"accord.push.{entity_type}",
                payload=payload,
                trace_id=trace_id,
            )
        return PushOut(accepted=accepted, system=body.system, event_id=event_id, trace_id=trace_id)


for _segment, _entity in RESOURCES.items():
    _register(_segment, _entity)
