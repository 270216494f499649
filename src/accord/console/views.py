"""What each console page shows, computed from the store: no HTTP, no HTML.

The page handlers in :mod:`accord.console.routes` call these and hand the
results to the templates. Figures come from the same code the REST API uses
(:func:`accord.kpi.compute`, :class:`~accord.store.Exceptions`,
:func:`~accord.store.verify`, :func:`~accord.runtime.dlq.dead_letters`,
:class:`~accord.reconcile.store.ReconcileRuns`), so the console and the API
never disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, func, select, text

from accord.api.auth import QUEUE_ROLES, Permission, Principal
from accord.api.context import ApiContext
from accord.api.routers.exceptions import business_context, replay_item, take_action
from accord.api.routers.traces import TraceOut, get_trace
from accord.connectors.governor import quota_policies
from accord.console.charts import Bar, bar_chart, column_chart
from accord.domain.money import Money, UnknownCurrency
from accord.errors import AccordError
from accord.kpi import Kpis, compute, cycle_spans, outstanding
from accord.reconcile.store import ReconcileRuns, StoredDiscrepancy, StoredRun
from accord.runtime.pipeline import DEAD_LETTER
from accord.store import (
    AuditReport,
    ExceptionItem,
    Exceptions,
    current_revision,
    head_revision,
    verify,
)
from accord.store.api_tables import API_ROLES
from accord.store.quota_tables import quota_state
from accord.store.reconcile_tables import DISCREPANCY_CLASSES
from accord.store.tables import ExceptionState, record_versions, records, xref

__all__ = [
    "ACTIONS",
    "ActionRefused",
    "Dashboard",
    "HealthView",
    "QueueRow",
    "TraceView",
    "act",
    "aging_buckets",
    "cycle_histogram",
    "cycle_spans",
    "dashboard",
    "duration",
    "health",
    "money",
    "percent",
    "queue",
    "queue_row",
    "reconciliation_run",
    "reconciliation_runs",
    "trace",
    "visible",
]

#: What a person may do to an item from the console.
ACTIONS = ("assign", "resolve", "ignore", "retry")
_OPEN = (ExceptionState.OPEN, ExceptionState.ASSIGNED)
_MAX_REASON = 2000


class ActionRefused(Exception):
    """An action the caller may not take, or that the item's state does not allow."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# --------------------------------------------------------------------------- formatting


def money(minor: int | None, currency: str | None) -> str:
    """``1,650.00 EUR`` from integer minor units (never through a float)."""
    if minor is None:
        return "—"
    if not currency:
        return f"{minor:,} (minor units)"
    try:
        plain = Money(minor, currency).format()
    except (UnknownCurrency, TypeError, ValueError):
        return f"{minor:,} {currency} (minor units)"
    sign = "-" if plain.startswith("-") else ""
    whole, dot, part = plain.lstrip("-").partition(".")
    return f"{sign}{int(whole):,}{dot}{part} {currency}"


def percent(ratio: Decimal | None) -> str:
    """``12.5 %`` from a ratio, ``—`` when there is none."""
    if ratio is None:
        return "—"
    return f"{(ratio * 100).quantize(Decimal('0.1'))} %"


def duration(seconds: float | None) -> str:
    """A short human duration: ``45 s``, ``12 min``, ``3 h 5 min``, ``4 d 2 h``."""
    if seconds is None:
        return "—"
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, _ = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


# --------------------------------------------------------------------------- dashboard


def _date(value: Any) -> date | None:
    if isinstance(value, str) and len(value) >= 10:
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            return None
    return value if isinstance(value, date) else None


def _load(conn: Connection, *entity_types: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(records.c.id, records.c.data).where(records.c.entity_type.in_(entity_types))
    )
    return [{**row.data, "id": row.id} for row in rows]


#: Aging buckets of open receivables: (label, first day, last day or None).
AGING = (("0–30 d", 0, 30), ("31–60 d", 31, 60), ("61–90 d", 61, 90), ("over 90 d", 91, None))


def aging_buckets(invoices: Iterable[Mapping[str, Any]], as_of: date) -> dict[str, list[int]]:
    """Amount outstanding on ``as_of`` per currency, in the :data:`AGING` buckets (minor units)."""
    result: dict[str, list[int]] = {}
    for invoice in invoices:
        due = outstanding(invoice, as_of)
        currency = invoice.get("currency")
        issued = _date(invoice.get("issue_date"))
        if not due or not isinstance(currency, str) or issued is None:
            continue
        age = max(0, (as_of - issued).days)
        buckets = result.setdefault(currency, [0] * len(AGING))
        for n, (_, first, last) in enumerate(AGING):
            if age >= first and (last is None or age <= last):
                buckets[n] += due
                break
    return dict(sorted(result.items()))


#: Histogram buckets of billing cycle time, in days.
CYCLE_BUCKETS = (("0–7", 0, 7), ("8–14", 8, 14), ("15–30", 15, 30), ("31–60", 31, 60))


def cycle_histogram(spans: Sequence[int]) -> list[tuple[str, int]]:
    """How many billed sources fall in each cycle-time bucket (``61+`` last)."""
    counts = [0] * (len(CYCLE_BUCKETS) + 1)
    for span in spans:
        for n, (_, first, last) in enumerate(CYCLE_BUCKETS):
            if first <= span <= last:
                counts[n] += 1
                break
        else:
            counts[-1] += 1
    labels = [label for label, _, _ in CYCLE_BUCKETS] + ["61+"]
    return list(zip(labels, counts, strict=True))


def quota_limits(ctx: ApiContext) -> dict[str, dict[str, int | None]]:
    """Each configured vendor's limits per window, as ``/v1/kpis`` reports them."""
    overrides = {name: system.quota for name, system in ctx.settings.systems.items()}
    return {
        vendor: {"second": p.per_second, "minute": p.per_minute, "day": p.per_day}
        for vendor, p in quota_policies(overrides).items()
        if vendor in ctx.settings.systems
    }


@dataclass
class Dashboard:
    kpis: Kpis
    aging: dict[str, list[int]]
    aging_charts: dict[str, Any]
    cycle_chart: Any
    quota_chart: Any
    lag_chart: Any
    audit: AuditReport | None
    """None when the caller's role may not read the audit log."""
    dead_letters: int | None
    health: HealthView


def dashboard(ctx: ApiContext, caller: Principal, as_of: date | None = None) -> Dashboard:
    """The KPIs as of ``as_of`` (default today), with the charts and the system's state."""
    now = ctx.clock()
    with ctx.engine.connect() as conn:
        kpis = compute(conn, now, quota_limits=quota_limits(ctx), as_of=as_of)
        invoices = _load(conn, "invoice")
        sources = _load(conn, "time_entry", "expense")
        audit = verify(conn) if caller.can(Permission.READ_OPERATIONS) else None
    aging = aging_buckets(invoices, kpis.as_of)
    aging_charts = {
        currency: bar_chart(
            f"Receivables by age, {currency}",
            [
                Bar(label, amount, money(amount, currency))
                for (label, _, _), amount in zip(AGING, amounts, strict=True)
            ],
        )
        for currency, amounts in aging.items()
    }
    spans = cycle_spans(sources, {str(i["id"]): i for i in invoices})
    quota_bars = [
        Bar(
            f"{q.vendor} / {q.window}",
            q.used,
            f"{q.used:,} of {q.limit:,}" if q.limit else f"{q.used:,}",
            q.limit,
        )
        for q in kpis.quota_use
    ]
    lag_bars = [
        Bar(
            s.system,
            Decimal(int(s.oldest_pending_seconds or 0)),
            f"{s.pending_events} waiting, oldest {duration(s.oldest_pending_seconds)}",
        )
        for s in kpis.sync_lag
    ]
    dead: int | None = None
    if caller.can(Permission.READ_OPERATIONS):
        from accord.runtime.dlq import dead_letters

        dead = len(dead_letters(ctx.engine, include_workflows=ctx.hub is not None))
    return Dashboard(
        kpis=kpis,
        aging=aging,
        aging_charts=aging_charts,
        cycle_chart=column_chart(
            "Billing cycle time: billed items per bucket of days", cycle_histogram(spans)
        ),
        quota_chart=bar_chart(
            "Quota used per vendor and window", quota_bars, empty="No vendor calls counted."
        ),
        lag_chart=bar_chart(
            "Sync lag: age of the oldest waiting event per system",
            lag_bars,
            empty="No system has synced yet.",
        ),
        audit=audit,
        dead_letters=dead,
        health=health(ctx, kpis),
    )


# --------------------------------------------------------------------------- exception queue


def visible(caller: Principal, item_role: str) -> bool:
    """A queue role sees its own queue; admin and auditor see every queue."""
    return caller.role not in QUEUE_ROLES or caller.role == item_role


@dataclass(frozen=True, slots=True)
class QueueRow:
    item: ExceptionItem
    account: str | None
    project: str | None
    invoice: str | None
    amount: str
    actions: tuple[str, ...]
    """The actions the caller may take on the item now."""
    last_action: str | None = None


def queue_row(caller: Principal, item: ExceptionItem, last_action: str | None = None) -> QueueRow:
    business = business_context(item.context)
    allowed: tuple[str, ...] = ()
    if caller.can(Permission.ACT_EXCEPTIONS) and visible(caller, item.role) and item.state in _OPEN:
        allowed = ("assign", "resolve", "ignore") + (("retry",) if item.type == DEAD_LETTER else ())
    return QueueRow(
        item=item,
        account=business.account,
        project=business.project,
        invoice=business.invoice,
        amount=money(business.amount_minor, business.currency)
        if business.amount_minor is not None
        else "—",
        actions=allowed,
        last_action=last_action,
    )


def parse_states(state: str | None) -> list[ExceptionState]:
    """``open``/``assigned``/``resolved``/``ignored``, ``all``, or the default (open work)."""
    if not state:
        return list(_OPEN)
    if state == "all":
        return list(ExceptionState)
    try:
        return [ExceptionState(state)]
    except ValueError:
        raise ActionRefused(422, f"unknown state {state!r}") from None


def queue(
    ctx: ApiContext, caller: Principal, role: str | None, state: str | None
) -> tuple[str | None, list[QueueRow]]:
    """The rows the caller may see, with the role filter actually applied."""
    if not caller.can(Permission.READ_EXCEPTIONS):
        raise ActionRefused(403, f"role {caller.role!r} may not read the exception queue")
    if role and role not in API_ROLES:
        raise ActionRefused(422, f"unknown role {role!r}")
    if caller.role in QUEUE_ROLES:
        if role and role != caller.role:
            raise ActionRefused(403, f"role {caller.role!r} sees only its own queue")
        role = caller.role
    states = parse_states(state)
    with ctx.engine.connect() as conn:
        items = Exceptions(conn, ctx.clock).list(role or None, states, limit=500)
    return role or None, [queue_row(caller, item) for item in items]


def act(
    ctx: ApiContext,
    caller: Principal,
    item_id: str,
    action: str,
    reason: str | None,
    trace_id: str | None,
) -> QueueRow:
    """Take ``action`` on an item as the API does: history row and audit entry, one transaction.

    ``assign`` gives the item to the caller. ``resolve`` and ``ignore`` need a
    reason. ``retry`` replays a dead letter (which audits the replay itself).
    """
    if action not in ACTIONS:
        raise ActionRefused(404, f"no action {action!r}")
    if not caller.can(Permission.ACT_EXCEPTIONS):
        raise ActionRefused(403, f"role {caller.role!r} may not act on exception items")
    reason = (reason or "").strip() or None
    if action == "assign":
        reason = caller.name
    elif action == "retry":
        reason = None
    if action in ("resolve", "ignore"):
        if reason is None:
            raise ActionRefused(422, f"a reason is required to {action} an item")
        if len(reason) > _MAX_REASON:
            raise ActionRefused(422, f"the reason is longer than {_MAX_REASON} characters")
    with ctx.engine.connect() as conn:
        item = Exceptions(conn, ctx.clock).get(item_id)
    if item is None or not visible(caller, item.role):
        raise ActionRefused(404, f"no exception item {item_id!r} in your queue")
    if item.state not in _OPEN:
        raise ActionRefused(409, f"item {item_id} is already {item.state.value}")
    if action == "retry":
        from accord.api.problems import Problem

        try:
            replay_item(ctx, caller, item_id)
        except Problem as problem:
            raise ActionRefused(problem.status, problem.detail) from None
    try:
        with ctx.engine.begin() as conn:
            assignee = caller.name if action == "assign" else reason
            updated = take_action(conn, ctx.clock, caller, item_id, action, assignee, trace_id)
    except AccordError as exc:
        raise ActionRefused(409, str(exc)) from None
    assert updated is not None
    done = {
        "assign": f"assigned to {caller.name}",
        "resolve": "resolved",
        "ignore": "ignored",
        "retry": "replayed",
    }[action]
    return queue_row(caller, updated, last_action=done)


# --------------------------------------------------------------------------- traces


@dataclass
class TraceView:
    trace: TraceOut
    links: dict[str, list[tuple[str, str, str]]]
    """Per ``entity_type/id`` touched: (system, external object, external id)."""


def trace(ctx: ApiContext, trace_id: str) -> TraceView | None:
    """The trace's timeline with each record's ids in every system; None if unknown."""
    from accord.api.problems import Problem

    try:
        found = get_trace(trace_id, ctx)
    except Problem:
        return None
    links: dict[str, list[tuple[str, str, str]]] = {}
    with ctx.engine.connect() as conn:
        for record in found.records:
            rows = conn.execute(
                select(xref.c.system, xref.c.external_object, xref.c.external_id)
                .where(xref.c.entity_type == record.entity_type, xref.c.canonical_id == record.id)
                .order_by(xref.c.system)
            )
            links[f"{record.entity_type}/{record.id}"] = [
                (r.system, r.external_object, r.external_id) for r in rows
            ]
    return TraceView(found, links)


def recent_traces(ctx: ApiContext, limit: int = 15) -> list[tuple[str, datetime]]:
    """The most recently active trace ids, newest first."""
    with ctx.engine.connect() as conn:
        rows = conn.execute(
            select(record_versions.c.trace_id, func.max(record_versions.c.at).label("last"))
            .where(record_versions.c.trace_id.is_not(None))
            .group_by(record_versions.c.trace_id)
            .order_by(func.max(record_versions.c.at).desc())
            .limit(limit)
        )
        return [(str(r.trace_id), r.last) for r in rows]


# --------------------------------------------------------------------------- reconciliation


def reconciliation_runs(ctx: ApiContext, limit: int = 50) -> list[StoredRun]:
    with ctx.engine.connect() as conn:
        return ReconcileRuns(conn, ctx.clock).list(limit=limit)


def reconciliation_run(
    ctx: ApiContext, run_id: str, category: str | None, limit: int = 500
) -> tuple[StoredRun, list[StoredDiscrepancy], int] | None:
    """A run, its discrepancies (of one class, when given) and how many it has in all."""
    if category and category not in DISCREPANCY_CLASSES:
        raise ActionRefused(422, f"unknown discrepancy class {category!r}")
    with ctx.engine.connect() as conn:
        runs = ReconcileRuns(conn, ctx.clock)
        run = runs.get(run_id)
        if run is None:
            return None
        found = runs.discrepancies(run_id, category=category or None, limit=limit)
        return run, found, runs.count(run_id)


# --------------------------------------------------------------------------- health


@dataclass(frozen=True, slots=True)
class VendorHealth:
    vendor: str
    breaker: str
    failures: int
    inflight: int
    paused_until: datetime | None
    waiting: int
    used: dict[str, tuple[int, int | None]]
    """Per window: (calls counted now, limit)."""


@dataclass
class HealthView:
    checks: list[tuple[str, str, bool]] = field(default_factory=list)
    """(component, state, healthy)."""
    vendors: list[VendorHealth] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(healthy for _, _, healthy in self.checks)


def health(ctx: ApiContext, kpis: Kpis | None = None) -> HealthView:
    """Database and schema, workers, DBOS, the event stream, and each vendor's governor.

    ``kpis`` (sync lag and quota use) are computed here unless the caller has them.
    """
    view = HealthView()
    vendors: dict[str, dict[str, Any]] = {}
    try:
        with ctx.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            for row in conn.execute(select(quota_state).order_by(quota_state.c.vendor)):
                vendors[row.vendor] = {
                    "breaker": row.breaker,
                    "failures": row.failures,
                    "inflight": row.inflight,
                    "paused_until": row.paused_until,
                    "waiting": len(row.waiters or {}),
                }
            if kpis is None:
                kpis = compute(conn, ctx.clock(), quota_limits=quota_limits(ctx))
        view.checks.append(("database", f"reachable ({ctx.engine.dialect.name})", True))
        revision, head = current_revision(ctx.engine), head_revision()
        view.checks.append(
            (
                "schema",
                f"at {revision}" if revision == head else f"at {revision}, expected {head}",
                revision == head,
            )
        )
    except Exception as exc:  # any failure to reach the database is what this page reports
        view.checks.append(("database", f"unreachable: {type(exc).__name__}", False))
        return view
    hub = ctx.hub
    if hub is None:
        view.checks.append(("workers", "not running in this process", True))
        view.checks.append(("DBOS", "not launched in this process", True))
        view.checks.append(("event stream", "not running in this process", True))
    else:
        alive = sum(1 for t in hub.worker._threads if t.is_alive())
        view.checks.append(("workers", f"{alive} dispatcher thread(s) alive", alive > 0))
        launched = bool(getattr(hub, "_launched", False))
        view.checks.append(("DBOS", "launched" if launched else "not launched", launched))
        stream = type(hub.stream).__name__
        where = "NATS JetStream" if "JetStream" in stream else "in-process"
        view.checks.append(("event stream", where, True))
    pending = sum(s.pending_events for s in kpis.sync_lag)
    view.checks.append(("inbox", f"{pending} event(s) waiting", True))
    used: dict[str, dict[str, tuple[int, int | None]]] = {}
    for q in kpis.quota_use:
        used.setdefault(q.vendor, {})[q.window] = (q.used, q.limit)
    for name in sorted(set(vendors) | set(used)):
        state = vendors.get(name, {})
        view.vendors.append(
            VendorHealth(
                vendor=name,
                breaker=str(state.get("breaker", "closed")),
                failures=int(state.get("failures", 0)),
                inflight=int(state.get("inflight", 0)),
                paused_until=state.get("paused_until"),
                waiting=int(state.get("waiting", 0)),
                used=used.get(name, {}),
            )
        )
        if state.get("breaker") == "open":
            view.checks.append((f"vendor {name}", "circuit breaker open", False))
    return view
