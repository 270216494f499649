"""The timeline of one deal, from won opportunity to cash, read from the store.

Every record version, effect, exception and audit entry of a deal's flow carries
the deal's business trace id (derived from the opportunity id, see
:func:`accord.q2c.context.trace_of`). :func:`build_trace` gathers them in time
order with each system's ids, and resolves every invoice line to its sources —
the time entries, expenses or milestone it bills — so that any amount on an
invoice leads back to the work it came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, or_, select

from accord.domain.money import Money
from accord.errors import InvalidInput
from accord.q2c.billing import source_kind
from accord.q2c.context import trace_of
from accord.store.tables import audit_log, effects, exceptions, record_versions, records, xref

__all__ = ["build_trace", "render_trace", "resolve_trace_id"]

_STAGES = {
    "opportunity": "deal",
    "account": "customer",
    "contract": "contract",
    "billing_schedule": "contract",
    "project": "project",
    "milestone": "work",
    "time_entry": "work",
    "expense": "work",
    "invoice": "invoice",
    "payment": "payment",
    "credit_memo": "credit",
    "write_off": "credit",
}


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def resolve_trace_id(engine: Engine, ident: str) -> str:
    """A trace id from a trace id, an opportunity id or an invoice number."""
    with engine.connect() as conn:
        if conn.execute(
            select(record_versions.c.trace_id).where(record_versions.c.trace_id == ident).limit(1)
        ).first():
            return ident
        derived = trace_of(ident)
        if conn.execute(
            select(record_versions.c.trace_id).where(record_versions.c.trace_id == derived).limit(1)
        ).first():
            return derived
        rows = conn.execute(
            select(records.c.data, records.c.id).where(records.c.entity_type == "invoice")
        ).all()
    for data, rid in rows:
        if ident in (rid, data.get("number"), data.get("stripe_id"), data.get("stripe_number")):
            with engine.connect() as conn:
                found = conn.execute(
                    select(record_versions.c.trace_id)
                    .where(
                        record_versions.c.entity_type == "invoice",
                        record_versions.c.id == rid,
                        record_versions.c.trace_id.is_not(None),
                    )
                    .limit(1)
                ).scalar_one_or_none()
            if found:
                return str(found)
    raise InvalidInput(
        "no trace, opportunity or invoice with this id in the store", record=ident, field="ID"
    )


def build_trace(engine: Engine, ident: str) -> dict[str, Any]:
    """The deal's timeline (records, effects, exceptions) and its invoices' sources."""
    trace_id = resolve_trace_id(engine, ident)
    with engine.connect() as conn:
        versions = conn.execute(
            select(record_versions)
            .where(record_versions.c.trace_id == trace_id)
            .order_by(record_versions.c.at, record_versions.c.entity_type, record_versions.c.id)
        ).all()
        keys = {(v.entity_type, v.id) for v in versions}
        links: dict[tuple[str, str], dict[str, str]] = {}
        if keys:
            for row in conn.execute(
                select(xref).where(
                    or_(
                        *(
                            (xref.c.entity_type == et) & (xref.c.canonical_id == cid)
                            for et, cid in keys
                        )
                    )
                )
            ):
                links.setdefault((row.entity_type, row.canonical_id), {})[row.system] = (
                    f"{row.external_object}/{row.external_id}"
                )
        done = conn.execute(
            select(effects).where(effects.c.trace_id == trace_id).order_by(effects.c.created_at)
        ).all()
        problems = conn.execute(select(exceptions).where(exceptions.c.trace_id == trace_id)).all()
        current = {
            (r.entity_type, r.id): dict(r.data)
            for r in conn.execute(select(records)).all()
            if (r.entity_type, r.id) in keys or r.entity_type in ("time_entry", "expense")
        }
        audit = [
            a
            for a in conn.execute(select(audit_log).order_by(audit_log.c.seq)).all()
            if isinstance(a.data, Mapping) and a.data.get("trace_id") == trace_id
        ]
    events: list[dict[str, Any]] = []
    for v in versions:
        events.append(
            {
                "at": _iso(v.at),
                "stage": _STAGES.get(v.entity_type, v.entity_type),
                "kind": "record",
                "what": f"{v.entity_type}/{v.id} v{v.version}",
                "system": v.system,
                "ids": links.get((v.entity_type, v.id), {}),
                "fields": list(v.changed_fields),
            }
        )
    for e in done:
        events.append(
            {
                "at": _iso(e.created_at),
                "stage": "effect",
                "kind": "effect",
                "what": f"{e.system} {e.operation}",
                "system": e.system,
                "ids": {e.system: e.external_id} if e.external_id else {},
                "status": e.status,
                "attempts": e.attempts,
                "completed_at": _iso(e.updated_at),
            }
        )
    for p in problems:
        events.append(
            {
                "at": _iso(p.created_at),
                "stage": "exception",
                "kind": "exception",
                "what": f"{p.type} for {p.role}: {p.summary}",
                "system": "accord",
                "ids": {},
                "state": p.state,
            }
        )
    events.sort(key=lambda e: (str(e["at"]), e["kind"]))
    invoices = []
    for (entity_type, rid), data in sorted(current.items()):
        if entity_type != "invoice" or (entity_type, rid) not in keys:
            continue
        currency = str(data["currency"])
        lines = []
        for line in data["lines"]:
            sources = []
            for source in line["sources"]:
                kind = source_kind(source)
                doc = current.get((kind, source), {})
                sources.append(_source(kind, source, doc))
            lines.append(
                {
                    "number": line["number"],
                    "contract_line": line["contract_line"],
                    "kind": line["kind"],
                    "amount": Money(int(line["amount"]), currency).format(),
                    "tax": Money(int(line["tax"]), currency).format(),
                    "trace": line["trace"],
                    "sources": sources,
                }
            )
        invoices.append(
            {
                "id": rid,
                "number": data["number"],
                "currency": currency,
                "gross": Money(int(data["gross"]), currency).format(),
                "status": data.get("status"),
                "ids": links.get(("invoice", rid), {}),
                "lines": lines,
            }
        )
    opportunity = next((rid for et, rid in sorted(keys) if et == "opportunity"), None)
    return {
        "trace_id": trace_id,
        "opportunity": opportunity,
        "events": events,
        "invoices": invoices,
        "audit_entries": len(audit),
    }


def _source(kind: str, source: str, doc: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"id": source, "kind": kind}
    if kind == "time_entry":
        out.update(
            harvest_id=doc.get("harvest_id"),
            date=doc.get("work_date"),
            person=doc.get("person"),
            hours=doc.get("hours"),
            notes=doc.get("notes"),
        )
    elif kind == "expense":
        amount = doc.get("amount") or {}
        out.update(
            harvest_id=doc.get("harvest_id"),
            date=doc.get("work_date"),
            person=doc.get("person"),
            amount=(
                Money(int(amount["minor"]), str(amount["currency"])).format() if amount else None
            ),
            currency=amount.get("currency"),
            notes=doc.get("notes"),
        )
    elif kind == "milestone":
        out.update(status=doc.get("status"), date=doc.get("date"))
    return out


def render_trace(doc: Mapping[str, Any]) -> str:
    """The timeline as plain text, one line per event, then each invoice's lines → sources."""
    out = [f"Trace {doc['trace_id']} (opportunity {doc['opportunity']})", ""]
    for e in doc["events"]:
        ids = ", ".join(f"{k}={v}" for k, v in sorted(e["ids"].items()))
        extra = f" [{e['status']}, {e['attempts']} attempt(s)]" if e["kind"] == "effect" else ""
        out.append(
            f"{str(e['at'])[:23]:23}  {e['stage']:9} {e['what']}{extra}"
            + (f"  ({ids})" if ids else "")
        )
    for inv in doc["invoices"]:
        ids = ", ".join(f"{k}={v}" for k, v in sorted(inv["ids"].items()))
        out += ["", f"Invoice {inv['number']}  {inv['gross']} {inv['currency']}  {inv['status']}"]
        out.append(f"  ids: {ids}")
        for line in inv["lines"]:
            out.append(f"  {line['number']}. {line['kind']} {line['amount']}  ← {line['trace']}")
            for s in line["sources"]:
                detail = ", ".join(
                    f"{k} {v}" for k, v in s.items() if k not in ("id", "kind") and v is not None
                )
                out.append(f"       {s['kind']} {s['id']}: {detail}")
    return "\n".join(out)
