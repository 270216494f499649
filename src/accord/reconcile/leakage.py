"""The revenue-leakage report: approved billable work that never reached an invoice.

A pure function over what the PSA approved and what billing invoiced:

* **unbilled** — approved billable time and expenses with no invoice line
  ``days`` or more days after approval;
* **write-offs without a reason** — work written off with no reason code;

each as a value per currency (integer minor units) and as a share of the
approved billable value in that currency.

    >>> from datetime import date
    >>> work = [
    ...     BillableWork("t1", "ACME", 100_00, "EUR", date(2025, 1, 2)),
    ...     BillableWork("t2", "ACME", 300_00, "EUR", date(2025, 1, 3)),
    ...     BillableWork("t3", "ACME", 100_00, "EUR", date(2025, 1, 3), written_off=True),
    ... ]
    >>> report = leakage(work, invoiced={"t1"}, as_of=date(2025, 2, 1), days=14)
    >>> [w.key for w in report.unbilled], report.unbilled_value, str(report.unbilled_share["EUR"])
    (['t2'], {'EUR': 30000}, '0.6000')
    >>> [w.key for w in report.unexplained_write_offs], str(report.write_off_share["EUR"])
    (['t3'], '0.2000')
"""

from __future__ import annotations

from collections.abc import Iterable, Set
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Any

from accord.errors import InvalidInput

if TYPE_CHECKING:
    from accord.reconcile.sides import Side

__all__ = ["BillableWork", "LeakageReport", "invoiced_keys", "leakage", "work_from"]

_SHARE = Decimal("0.0001")


@dataclass(frozen=True, slots=True)
class BillableWork:
    """One approved billable time entry or expense, as the PSA holds it."""

    key: str
    """The source record's id: invoice lines carry it."""
    account_id: str
    amount: int
    """Billable value in integer minor units of ``currency``."""
    currency: str
    approved_on: date
    written_off: bool = False
    reason_code: str | None = None
    """Why it was written off; a write-off without one is itself leakage."""


@dataclass(slots=True)
class LeakageReport:
    as_of: date
    days: int
    approved_value: dict[str, int] = field(default_factory=dict)
    unbilled: list[BillableWork] = field(default_factory=list)
    unbilled_value: dict[str, int] = field(default_factory=dict)
    unbilled_share: dict[str, Decimal] = field(default_factory=dict)
    unexplained_write_offs: list[BillableWork] = field(default_factory=list)
    write_off_value: dict[str, int] = field(default_factory=dict)
    write_off_share: dict[str, Decimal] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        def items(works: list[BillableWork]) -> list[dict[str, Any]]:
            return [
                {
                    "key": w.key,
                    "account_id": w.account_id,
                    "amount": w.amount,
                    "currency": w.currency,
                    "approved_on": w.approved_on.isoformat(),
                    "age_days": (self.as_of - w.approved_on).days,
                }
                for w in works
            ]

        return {
            "as_of": self.as_of.isoformat(),
            "days": self.days,
            "approved_value": self.approved_value,
            "unbilled": {
                "items": items(self.unbilled),
                "value": self.unbilled_value,
                "share": {k: str(v) for k, v in self.unbilled_share.items()},
            },
            "write_offs_without_reason": {
                "items": items(self.unexplained_write_offs),
                "value": self.write_off_value,
                "share": {k: str(v) for k, v in self.write_off_share.items()},
            },
        }


def leakage(
    work: Iterable[BillableWork], *, invoiced: Set[str], as_of: date, days: int = 30
) -> LeakageReport:
    """The leakage as of ``as_of``: ``invoiced`` are the source keys on invoice lines."""
    if days < 0:
        raise InvalidInput("must not be negative", record="leakage", field="days")
    report = LeakageReport(as_of, days)
    for item in work:
        if isinstance(item.amount, bool) or not isinstance(item.amount, int):
            raise InvalidInput("must be integer minor units", record=item.key, field="amount")
        report.approved_value[item.currency] = (
            report.approved_value.get(item.currency, 0) + item.amount
        )
        if item.written_off:
            if not (item.reason_code or "").strip():
                report.unexplained_write_offs.append(item)
                _add(report.write_off_value, item)
            continue
        if item.key not in invoiced and (as_of - item.approved_on).days >= days:
            report.unbilled.append(item)
            _add(report.unbilled_value, item)
    report.unbilled_share = _shares(report.unbilled_value, report.approved_value)
    report.write_off_share = _shares(report.write_off_value, report.approved_value)
    return report


def _add(totals: dict[str, int], item: BillableWork) -> None:
    totals[item.currency] = totals.get(item.currency, 0) + item.amount


def _shares(part: dict[str, int], whole: dict[str, int]) -> dict[str, Decimal]:
    return {
        currency: (Decimal(value) / Decimal(whole[currency])).quantize(_SHARE, ROUND_HALF_EVEN)
        if whole.get(currency)
        else Decimal(0).quantize(_SHARE)
        for currency, value in part.items()
    }


# -- reading the work and the invoice lines from the billable_work pair's sources ---------------

_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_WORK_COLUMNS = ("account_id", "currency", "amount", "approved_on")
_OPTIONAL_COLUMNS = ("written_off", "reason_code")


def _minor(value: Any, currency: str, key: str) -> int:
    from accord.domain.money import UnknownCurrency, currency_digits
    from accord.reconcile.values import money_value

    if isinstance(value, int) and not isinstance(value, bool):
        return value  # a table holds integer minor units
    amount = money_value(value)
    if not isinstance(amount, Decimal):
        raise InvalidInput(f"not an amount: {value!r}", record=key, field="amount")
    try:
        digits = currency_digits(currency)
    except UnknownCurrency:
        raise InvalidInput(f"unknown currency {currency!r}", record=key, field="currency") from None
    minor = amount.scaleb(digits)
    if minor != minor.to_integral_value():
        raise InvalidInput(
            f"{value} has more decimals than {currency} allows", record=key, field="amount"
        )
    return int(minor)


def _day(value: Any, key: str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip()[:10])
    except ValueError:
        raise InvalidInput(
            f"not a date (YYYY-MM-DD): {value!r}", record=key, field="approved_on"
        ) from None


def work_from(side: Side) -> list[BillableWork]:
    """Approved billable work from a side with ``account_id, currency, amount, approved_on``
    (and optionally ``written_off``, ``reason_code``) columns; amounts in major units
    (files) or integer minor units (tables)."""
    present = set(side.columns())
    optional = [c for c in _OPTIONAL_COLUMNS if c in present]
    work = []
    for key, values in side.scan([*_WORK_COLUMNS, *optional]):
        account, currency, amount, approved = values[:4]
        extra = dict(zip(optional, values[4:], strict=True))
        currency = str(currency or "").strip().upper()
        if not currency:
            raise InvalidInput("missing currency", record=key, field="currency")
        written_off = str(extra.get("written_off") or "").strip().lower() in _TRUE
        reason = extra.get("reason_code")
        work.append(
            BillableWork(
                key,
                str(account or ""),
                _minor(amount, currency, key),
                currency,
                _day(approved, key),
                written_off=written_off,
                reason_code=str(reason).strip() if reason not in (None, "") else None,
            )
        )
    return work


def invoiced_keys(side: Side) -> set[str]:
    """The source keys that appear on invoice lines (the side's keys)."""
    return {key for key, _ in side.scan([])}
