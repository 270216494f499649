"""What the quote-to-cash processes share: the store, the effect executor, the systems.

A :class:`Q2C` is built once by the composition root of a run (``demo.py`` or a
worker) and bound for the DBOS steps with :func:`bind`, the way the runtime's
workflows are. Every outbound write goes through :func:`perform`, which derives
the idempotency key from canonical ids and carries the deal's trace id into the
effect ledger; every canonical write goes through :func:`put`, which stores the
version with its trace id and appends the audit entry in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, TypeVar, cast

from dbos import DBOS
from sqlalchemy import Engine

from accord.billing.model import BillingWorld
from accord.connectors.harvest.connector import HarvestConnector
from accord.connectors.netsuite.connector import NetSuiteConnector
from accord.connectors.salesforce.connector import SalesforceConnector
from accord.connectors.stripe.connector import StripeConnector
from accord.domain.ids import deterministic_id
from accord.errors import worth_retrying
from accord.runtime.effects import Effect, EffectExecutor, EffectOutcome, effect_key
from accord.store import Records, Xref, append

F = TypeVar("F", bound=Callable[..., Any])

__all__ = [
    "step",
    "CRM",
    "ERP",
    "PAYMENTS",
    "PSA",
    "ErpSettings",
    "Q2C",
    "bind",
    "current",
    "link",
    "perform",
    "put",
    "trace_of",
]

CRM = "salesforce"
PSA = "harvest"
PAYMENTS = "stripe"
ERP = "netsuite"
ACTOR = "q2c"


def trace_of(opportunity_id: str) -> str:
    """The business trace id of a deal: the same for every record, effect and exception
    of that deal's flow, derived from the CRM opportunity id."""
    return deterministic_id("q2c-trace", opportunity_id)


@dataclass(frozen=True, slots=True)
class ErpSettings:
    """How canonical records land in the ERP."""

    subsidiaries: Mapping[str, str] = field(default_factory=lambda: {"us": "1", "uk": "2"})
    """ERP subsidiary internal id of each legal entity."""
    item_id: str = "1"
    """Service item billed on invoice lines."""
    tax_item_id: str = "2"
    """Item that carries VAT on an invoice."""
    fx_account: str = "Realised FX gain/loss"
    """Where realised exchange differences are booked."""


@dataclass
class Q2C:
    engine: Engine
    executor: EffectExecutor
    crm: SalesforceConnector
    psa: HarvestConnector
    payments: StripeConnector
    world: BillingWorld
    """Contract terms, rate cards, people, tax and FX: what the deal desk agreed."""
    facts: Any
    """The scenario's business facts (:class:`accord.q2c.scenario.seed.Facts`)."""
    erp_connector: NetSuiteConnector
    erp: ErpSettings = field(default_factory=ErpSettings)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    @property
    def business_date(self) -> date:
        return self.world.as_of


_bound: dict[str, Q2C] = {}


def bind(ctx: Q2C) -> None:
    """Give the quote-to-cash workflows their context (the composition root calls it)."""
    _bound["ctx"] = ctx


def current() -> Q2C:
    try:
        return _bound["ctx"]
    except KeyError:
        raise RuntimeError("quote-to-cash workflows used before bind(ctx)") from None


def perform(
    ctx: Q2C,
    system: str,
    operation: str,
    ids: tuple[str, ...],
    request: Mapping[str, Any],
    *,
    trace_id: str | None,
) -> EffectOutcome:
    """One outbound write, exactly once: keyed by ``(system, operation, *ids)``."""
    key = effect_key(system, operation, *ids)
    return ctx.executor.execute(Effect(system, operation, key, dict(request), trace_id))


def put(
    ctx: Q2C,
    entity_type: str,
    id: str,
    data: Mapping[str, Any],
    *,
    system: str,
    trace_id: str | None,
    action: str | None = None,
) -> int:
    """Store a canonical version (no-op when unchanged) with its audit entry; its version."""
    with ctx.engine.begin() as conn:
        result = Records(conn, clock=ctx.clock).put(
            entity_type, id, data, system=system, actor=ACTOR, trace_id=trace_id
        )
        if result.changed:
            append(
                conn,
                actor=ACTOR,
                action=action or f"{entity_type}.put",
                subject=f"{entity_type}/{id}",
                data={
                    "trace_id": trace_id,
                    "version": result.version,
                    "fields": list(result.changed_fields),
                },
                at=ctx.clock(),
            )
        return result.version


def link(
    ctx: Q2C, entity_type: str, canonical_id: str, system: str, obj: str, external_id: str
) -> None:
    with ctx.engine.begin() as conn:
        Xref(conn, clock=ctx.clock).link(entity_type, canonical_id, system, obj, external_id)


def get(ctx: Q2C, entity_type: str, id: str) -> dict[str, Any] | None:
    with ctx.engine.connect() as conn:
        found = Records(conn).get(entity_type, id)
    return None if found is None else dict(found.data)


def external_id(ctx: Q2C, entity_type: str, canonical_id: str, system: str) -> str | None:
    with ctx.engine.connect() as conn:
        found = Xref(conn).lookup(entity_type, canonical_id, system)
    return None if found is None else found.external_id


def canonical_id(ctx: Q2C, system: str, obj: str, ext: str) -> str | None:
    with ctx.engine.connect() as conn:
        found = Xref(conn).by_external(system, obj, ext)
    return None if found is None else found.canonical_id


def step(interval_seconds: float) -> Callable[[F], F]:
    """A business-process step: retried with exponential backoff from ``interval_seconds``
    (8 attempts), except when its input is bad, which no retry mends."""
    return cast(
        Callable[[F], F],
        DBOS.step(
            should_retry=worth_retrying,
            retries_allowed=True,
            max_attempts=8,
            interval_seconds=interval_seconds,
            backoff_rate=2.0,
        ),
    )
