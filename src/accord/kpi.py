"""Deal-to-cash KPIs, computed from the canonical store (DOMAIN.md, part 3).

The functions in the first half are pure: they take canonical records as
mappings (what ``records.data`` holds) and an ``as_of`` date and return
values — money as integer minor units *per currency* (amounts of different
currencies are never added), ratios and days as :class:`~decimal.Decimal`.
:func:`compute` is the query layer: it reads the records and the runtime
tables through one connection and calls them.

Fields read (records without them are left out of the measure, not guessed):

* ``time_entry`` and ``expense``: ``approval`` (``approved``), ``billable``,
  ``billing`` (``unbilled``, ``billed``, ``on_hold``, ``written_off``), the
  billable value as ``amount`` (minor units) with ``currency``, or as
  ``amount: {"minor": …, "currency": …}``, ``approved_on`` (ISO date;
  ``work_date`` when absent), ``invoice_id`` (or ``invoice``) once billed,
  ``write_off_reason`` when written off.
* ``invoice``: ``status``, ``issue_date``, ``currency``, ``gross``,
  ``amount_due`` and ``credited`` (minor units), ``paid_on`` once paid — so
  that a receivable can be told as of a past date.
* ``credit_memo``: ``invoice_id`` (or ``invoice``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import Connection, func, select

from accord.store.quota_tables import quota_usage
from accord.store.repo import Inbox
from accord.store.tables import records, xref

__all__ = [
    "CycleTime",
    "Kpis",
    "billing_cycle_time",
    "compute",
    "cycle_spans",
    "dispute_rate",
    "dso",
    "outstanding",
    "quota_use",
    "revenue_leakage",
    "sync_lag",
    "wip",
]

Record = Mapping[str, Any]
_OPEN_INVOICE = {"issued", "partially_paid"}
_NOT_ISSUED = {"draft", "void", None}
_TENTH = Decimal("0.1")
_RATIO = Decimal("0.0001")


def _date(value: Any) -> date | None:
    if isinstance(value, date):
        return value
    if isinstance(value, str) and len(value) >= 10:
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None


def _minor(value: Any) -> int | None:
    """An integer amount of minor units; anything else (a float, text) is not money."""
    return value if type(value) is int else None


def _value(source: Record) -> tuple[int | None, str | None]:
    """The billable value of a source: minor units and currency, in either shape."""
    amount = source.get("amount")
    if isinstance(amount, Mapping):
        currency = amount.get("currency")
        return _minor(amount.get("minor")), currency if isinstance(currency, str) else None
    currency = source.get("currency")
    return _minor(amount), currency if isinstance(currency, str) else None


def _invoice_of(record: Record) -> str | None:
    found = record.get("invoice_id") or record.get("invoice")
    return None if found is None else str(found)


def _approved_billable(source: Record) -> bool:
    return source.get("approval") == "approved" and source.get("billable") is True


def wip(sources: Iterable[Record]) -> dict[str, int]:
    """Work in progress: value of approved, billable, unbilled work, per currency."""
    total: dict[str, int] = defaultdict(int)
    for source in sources:
        amount, currency = _value(source)
        if (
            _approved_billable(source)
            and source.get("billing", "unbilled") == "unbilled"
            and amount is not None
            and currency is not None
        ):
            total[currency] += amount
    return dict(sorted(total.items()))


def outstanding(invoice: Record, as_of: date) -> int | None:
    """What the invoice had outstanding on ``as_of``.

    An invoice paid by then had nothing; one paid later had its gross less
    credits; one not paid yet has its ``amount_due`` while it is open.
    """
    issued = _date(invoice.get("issue_date"))
    if issued is None or issued > as_of:
        return None
    paid_on = _date(invoice.get("paid_on"))
    if paid_on is not None:
        if paid_on <= as_of:
            return None
        gross = _minor(invoice.get("gross"))
        return None if gross is None else gross - (_minor(invoice.get("credited")) or 0)
    if invoice.get("status") in _OPEN_INVOICE:
        return _minor(invoice.get("amount_due"))
    return None


def dso(invoices: Iterable[Record], as_of: date, days: int = 90) -> dict[str, Decimal | None]:
    """Days sales outstanding per currency: receivables / revenue of the last ``days`` × days.

    Receivables are the amounts due on open invoices; revenue is the gross of
    invoices issued in the ``days`` up to ``as_of``. None where there was no
    revenue in the window.
    """
    receivable: dict[str, int] = defaultdict(int)
    revenue: dict[str, int] = defaultdict(int)
    start = as_of - timedelta(days=days)
    for invoice in invoices:
        currency = invoice.get("currency")
        if not isinstance(currency, str) or invoice.get("status") in _NOT_ISSUED:
            continue
        issued = _date(invoice.get("issue_date"))
        due = outstanding(invoice, as_of)
        if due:
            receivable[currency] += due
        gross = _minor(invoice.get("gross"))
        if issued is not None and gross is not None and start < issued <= as_of:
            revenue[currency] += gross
    result: dict[str, Decimal | None] = {}
    for currency in sorted(set(receivable) | set(revenue)):
        earned = revenue.get(currency, 0)
        result[currency] = (
            None
            if earned <= 0
            else (Decimal(receivable.get(currency, 0)) / earned * days).quantize(
                _TENTH, ROUND_HALF_UP
            )
        )
    return result


@dataclass(frozen=True, slots=True)
class CycleTime:
    """Days from approval of billed work to the issue of its invoice."""

    count: int
    median_days: Decimal | None
    p90_days: Decimal | None


def _median(values: Sequence[int]) -> Decimal:
    middle = len(values) // 2
    if len(values) % 2:
        return Decimal(values[middle])
    return (Decimal(values[middle - 1]) + values[middle]) / 2


def _nearest_rank(values: Sequence[int], percent: int) -> Decimal:
    rank = max(1, -(-len(values) * percent // 100))
    return Decimal(values[rank - 1])


def cycle_spans(sources: Iterable[Record], invoices: Mapping[str, Record]) -> list[int]:
    """Days from approval to invoice of each billed source, sorted: the distribution
    :func:`billing_cycle_time` summarises (the console charts it)."""
    spans: list[int] = []
    for source in sources:
        if source.get("billing") != "billed" or not _approved_billable(source):
            continue
        invoice = invoices.get(_invoice_of(source) or "")
        approved = _date(source.get("approved_on")) or _date(source.get("work_date"))
        issued = _date(invoice.get("issue_date")) if invoice is not None else None
        if approved is not None and issued is not None:
            spans.append(max(0, (issued - approved).days))
    return sorted(spans)


def billing_cycle_time(sources: Iterable[Record], invoices: Mapping[str, Record]) -> CycleTime:
    """Median and 90th percentile (nearest rank) of invoice issued − source approved."""
    spans = cycle_spans(sources, invoices)
    if not spans:
        return CycleTime(0, None, None)
    return CycleTime(len(spans), _median(spans), _nearest_rank(spans, 90))


def revenue_leakage(
    sources: Iterable[Record], as_of: date, after_days: int = 30
) -> dict[str, Decimal | None]:
    """Share of approved billable value leaking, per currency.

    Leaking: approved billable work still unbilled ``after_days`` after its
    approval, plus write-offs without a reason. Over all approved billable value.
    """
    leaked: dict[str, int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    cutoff = as_of - timedelta(days=after_days)
    for source in sources:
        amount, currency = _value(source)
        if not _approved_billable(source) or amount is None or currency is None:
            continue
        total[currency] += amount
        billing = source.get("billing", "unbilled")
        approved = _date(source.get("approved_on")) or _date(source.get("work_date"))
        stale = billing == "unbilled" and approved is not None and approved <= cutoff
        unexplained = billing == "written_off" and not source.get("write_off_reason")
        if stale or unexplained:
            leaked[currency] += amount
    return {
        currency: (None if value <= 0 else (Decimal(leaked[currency]) / value).quantize(_RATIO))
        for currency, value in sorted(total.items())
    }


def dispute_rate(invoices: Iterable[Record], credit_memos: Iterable[Record]) -> Decimal | None:
    """Invoices later credited / invoices issued; None when none was issued."""
    credited_ids = {found for m in credit_memos if (found := _invoice_of(m)) is not None}
    issued = 0
    disputed = 0
    for invoice in invoices:
        if invoice.get("status") in _NOT_ISSUED:
            continue
        issued += 1
        credited = _minor(invoice.get("credited")) or 0
        if credited > 0 or str(invoice.get("id")) in credited_ids:
            disputed += 1
    return None if issued == 0 else (Decimal(disputed) / issued).quantize(_RATIO)


@dataclass(frozen=True, slots=True)
class SystemLag:
    """How far behind Accord is with one system."""

    system: str
    pending_events: int
    oldest_pending_seconds: float | None
    """Age of the oldest inbound event not yet processed."""
    last_synced_seconds: float | None
    """Time since any record was last synced with the system."""


def sync_lag(
    pending: Mapping[str, tuple[int, datetime | None]],
    last_synced: Mapping[str, datetime | None],
    now: datetime,
) -> list[SystemLag]:
    """Per system: events waiting and their age, and time since the last sync."""
    result = []
    for system in sorted(set(pending) | set(last_synced)):
        count, oldest = pending.get(system, (0, None))
        synced = last_synced.get(system)
        result.append(
            SystemLag(
                system,
                count,
                None if oldest is None else max(0.0, (now - oldest).total_seconds()),
                None if synced is None else max(0.0, (now - synced).total_seconds()),
            )
        )
    return result


@dataclass(frozen=True, slots=True)
class QuotaUse:
    vendor: str
    window: str
    used: int
    limit: int | None


def quota_use(
    used: Mapping[tuple[str, str], int], limits: Mapping[str, Mapping[str, int | None]]
) -> list[QuotaUse]:
    """Calls granted per vendor and window against the configured limit."""
    keys = set(used) | {
        (vendor, window) for vendor, windows in limits.items() for window, v in windows.items() if v
    }
    return [
        QuotaUse(vendor, window, used.get((vendor, window), 0), limits.get(vendor, {}).get(window))
        for vendor, window in sorted(keys)
    ]


@dataclass(frozen=True, slots=True)
class Kpis:
    as_of: date
    wip: dict[str, int]
    dso_days: dict[str, Decimal | None]
    billing_cycle_time: CycleTime
    revenue_leakage: dict[str, Decimal | None]
    dispute_rate: Decimal | None
    sync_lag: list[SystemLag]
    quota_use: list[QuotaUse] = field(default_factory=list)


def _load(conn: Connection, entity_type: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(records.c.id, records.c.data).where(records.c.entity_type == entity_type)
    )
    return [{**row.data, "id": row.id} for row in rows]


_WINDOWS = {
    "second": timedelta(seconds=1),
    "minute": timedelta(minutes=1),
    "day": timedelta(days=1),
}


def compute(
    conn: Connection,
    now: datetime,
    *,
    quota_limits: Mapping[str, Mapping[str, int | None]] | None = None,
    dso_days: int = 90,
    leakage_after_days: int = 30,
    as_of: date | None = None,
) -> Kpis:
    """Every KPI, read through ``conn``: the business ones as of ``as_of`` (default: the
    day of ``now``), sync lag and quota use at ``now``."""
    as_of = as_of or now.date()
    sources = _load(conn, "time_entry") + _load(conn, "expense")
    invoices = _load(conn, "invoice")
    memos = _load(conn, "credit_memo")
    pending = Inbox(conn).waiting_by_system()
    synced = {
        system: at
        for system, at in conn.execute(
            select(xref.c.system, func.max(xref.c.last_synced)).group_by(xref.c.system)
        )
    }
    used: dict[tuple[str, str], int] = {}
    for window, span in _WINDOWS.items():
        for vendor, count in conn.execute(
            select(quota_usage.c.vendor, func.sum(quota_usage.c.used))
            .where(quota_usage.c.window == window, quota_usage.c.window_start > now - span)
            .group_by(quota_usage.c.vendor)
        ):
            used[(vendor, window)] = int(count or 0)
    return Kpis(
        as_of=as_of,
        wip=wip(sources),
        dso_days=dso(invoices, as_of, dso_days),
        billing_cycle_time=billing_cycle_time(sources, {str(i["id"]): i for i in invoices}),
        revenue_leakage=revenue_leakage(sources, as_of, leakage_after_days),
        dispute_rate=dispute_rate(invoices, memos),
        sync_lag=sync_lag(pending, synced, now),
        quota_use=quota_use(used, quota_limits or {}),
    )
