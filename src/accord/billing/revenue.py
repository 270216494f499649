"""Revenue recognition (ASC 606 / IFRS 15) as pure functions.

Billing decides what the customer is *invoiced*; this module decides what the
firm has *earned*. The two differ, and the difference is the contract asset
(earned, not yet billed) or the contract liability (billed, not yet earned).
DOMAIN.md part 3 names the four methods Accord supports:

``right_to_invoice``
    Time and materials under the practical expedient: revenue in a period is
    the value of approved billable work dated in it, with cumulative revenue
    capped at the line's not-to-exceed amount when there is one.
``cost_to_cost``
    Fixed fee over time, input method: cumulative revenue is cost to date /
    estimated cost at completion × transaction price, capped at the price.
``milestone``
    Output method: each milestone's amount is revenue on its acceptance date.
``ratable``
    Subscriptions and stand-ready retainers: fee × days of the term inside the
    period / days in the term, both dates inclusive.

Every method is computed the same way: a function gives the *cumulative*
revenue to the end of a day, rounded half-up to the minor unit, and a period's
revenue is cumulative at its end minus cumulative the day before it starts.
Rounding the cumulative figure rather than each period's share is what makes a
schedule sum exactly to the fee: the rounding of one period is absorbed by the
next instead of piling up, and a revised estimate under cost-to-cost becomes
the cumulative catch-up that the standards require.

All arithmetic on money is done on integer minor units (exact half-up of the
exact rational result), so no float and no Decimal context precision can move a
cent. Inputs are validated when they are built and refused with
:class:`~accord.errors.InvalidInput` naming the record; nothing here does I/O.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar, TypeAlias, assert_never

from accord.domain.money import Money
from accord.errors import InvalidInput

__all__ = [
    "ContractBalance",
    "CostToCostTerms",
    "CostToDate",
    "MilestoneAcceptance",
    "MilestoneTerms",
    "RatableTerms",
    "RevenueLine",
    "RevenueMethod",
    "RevenuePeriod",
    "RevenueSchedule",
    "RevenueTerms",
    "RightToInvoiceTerms",
    "WorkValue",
    "build_schedule",
    "contract_balances",
    "month_periods",
    "recognise_cost_to_cost",
    "recognise_milestones",
    "recognise_ratable",
    "recognise_right_to_invoice",
]

_ONE_DAY = dt.timedelta(days=1)


class RevenueMethod(StrEnum):
    """How a contract line earns revenue (the ``revenue method`` of a ContractLine)."""

    RIGHT_TO_INVOICE = "right_to_invoice"
    """T&M: the value of approved billable work, capped by any not-to-exceed."""
    COST_TO_COST = "cost_to_cost"
    """Fixed fee over time: progress measured by cost incurred against estimate."""
    MILESTONE = "milestone"
    """Fixed fee by deliverables: each milestone's amount when it is accepted."""
    RATABLE = "ratable"
    """Subscriptions and retainers: the fee spread evenly over the days of the term."""


# -- periods ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RevenuePeriod:
    """A reporting period, ``start`` and ``end`` both inclusive."""

    start: dt.date
    """First day of the period."""
    end: dt.date
    """Last day of the period (inclusive, so a one-day period has start == end)."""

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise InvalidInput(
                f"ends on {self.end.isoformat()} before it starts on {self.start.isoformat()}",
                record="period",
            )

    @property
    def days(self) -> int:
        """Number of days in the period, counting both ends."""
        return (self.end - self.start).days + 1

    def contains(self, day: dt.date) -> bool:
        return self.start <= day <= self.end


def month_periods(start: dt.date, end: dt.date) -> tuple[RevenuePeriod, ...]:
    """Calendar months from ``start`` to ``end``, the first and last cut to fit.

    Revenue is reported by month, but terms rarely begin on the 1st: a term from
    16 January to 15 February gives the periods 16–31 January and 1–15 February,
    so the schedule covers exactly the days asked for and no more.
    """
    if end < start:
        raise InvalidInput(
            f"ends on {end.isoformat()} before it starts on {start.isoformat()}",
            record="periods",
        )
    periods: list[RevenuePeriod] = []
    cursor = start
    while True:
        month_end = _last_day_of_month(cursor)
        if month_end >= end:
            periods.append(RevenuePeriod(cursor, end))
            return tuple(periods)
        periods.append(RevenuePeriod(cursor, month_end))
        cursor = month_end + _ONE_DAY


def _last_day_of_month(day: dt.date) -> dt.date:
    if day.month == 12:
        return dt.date(day.year, 12, 31)
    return dt.date(day.year, day.month + 1, 1) - _ONE_DAY


def _check_consecutive(periods: Sequence[RevenuePeriod]) -> None:
    """Refuse gaps and overlaps: either would lose or double-count revenue."""
    for previous, current in zip(periods, periods[1:], strict=False):
        if current.start != previous.end + _ONE_DAY:
            raise InvalidInput(
                f"period starting {current.start.isoformat()} does not follow the one "
                f"ending {previous.end.isoformat()}",
                record="periods",
            )


# -- inputs -------------------------------------------------------------------


def _require_currency(amount: Money, currency: str, *, record: str, field: str) -> None:
    if amount.currency != currency:
        raise InvalidInput(
            f"is in {amount.currency}, the line is in {currency}", record=record, field=field
        )


def _require_not_negative(amount: Money, *, record: str, field: str) -> None:
    if amount.minor < 0:
        raise InvalidInput(f"must not be negative, got {amount}", record=record, field=field)


@dataclass(frozen=True, slots=True)
class WorkValue:
    """Value of approved billable work (time or expense) on one day.

    The caller has already applied approval, billability and rate resolution;
    what remains is a dated amount. Negative values are refused: a correction
    changes the work it corrects rather than adding negative work.
    """

    date: dt.date
    """The day the work was done (the time entry's or expense's date)."""
    amount: Money
    """Its billable value in the contract line's currency."""

    def __post_init__(self) -> None:
        _require_not_negative(self.amount, record="work", field="amount")


@dataclass(frozen=True, slots=True)
class CostToDate:
    """A measurement of cumulative cost incurred, as of ``date``.

    Each measurement is a running total, not the cost of the period. A revised
    estimate at completion may come with it; it applies from this date on, and
    the change shows up as a cumulative catch-up in the period that contains it.
    """

    date: dt.date
    """The day the measurement was taken."""
    amount: Money
    """Total cost incurred from the start of the work to ``date``."""
    estimate_at_completion: Money | None = None
    """A revised estimate of total cost, or None to keep the one in force."""

    def __post_init__(self) -> None:
        record = f"cost[{self.date.isoformat()}]"
        _require_not_negative(self.amount, record=record, field="amount")
        if self.estimate_at_completion is not None:
            _require_currency(
                self.estimate_at_completion,
                self.amount.currency,
                record=record,
                field="estimate_at_completion",
            )
            _require_positive_estimate(self.estimate_at_completion, record=record)


def _require_positive_estimate(estimate: Money, *, record: str) -> None:
    # Zero would divide by zero; a negative estimate would turn cost into
    # negative progress. Both mean the estimate is wrong, not the revenue.
    if estimate.minor <= 0:
        raise InvalidInput(
            f"must be positive, got {estimate}", record=record, field="estimate_at_completion"
        )


@dataclass(frozen=True, slots=True)
class MilestoneAcceptance:
    """A milestone the customer accepted: its amount is earned on ``date``."""

    id: str
    """The milestone's id; each milestone is recognised once."""
    date: dt.date
    """The day of acceptance."""
    amount: Money
    """The part of the transaction price allocated to this milestone."""

    def __post_init__(self) -> None:
        _require_not_negative(self.amount, record=f"milestone[{self.id}]", field="amount")


@dataclass(frozen=True, slots=True)
class RightToInvoiceTerms:
    """What ``right_to_invoice`` needs: the line's currency, its work, its cap."""

    method: ClassVar[RevenueMethod] = RevenueMethod.RIGHT_TO_INVOICE

    currency: str
    """ISO 4217 code of the contract line."""
    work: tuple[WorkValue, ...]
    """All approved billable work on the line, in any order."""
    cap: Money | None = None
    """Not-to-exceed amount; cumulative revenue never goes above it."""

    def __post_init__(self) -> None:
        for item in self.work:
            _require_currency(
                item.amount, self.currency, record=f"work[{item.date.isoformat()}]", field="amount"
            )
        if self.cap is not None:
            _require_currency(self.cap, self.currency, record="line", field="cap")
            _require_not_negative(self.cap, record="line", field="cap")

    @property
    def transaction_price(self) -> Money | None:
        # T&M consideration is variable; the cap is a limit, not a price.
        return None


@dataclass(frozen=True, slots=True)
class CostToCostTerms:
    """What ``cost_to_cost`` needs: price, estimated cost, cost measurements.

    Cost and estimate share a currency (usually the delivering entity's), which
    may differ from the price's: only their ratio is used.
    """

    method: ClassVar[RevenueMethod] = RevenueMethod.COST_TO_COST

    price: Money
    """The fixed transaction price; cumulative revenue never exceeds it."""
    estimated_cost: Money
    """Estimated total cost at completion (EAC) at the start; must be positive."""
    costs: tuple[CostToDate, ...]
    """Cumulative cost measurements, at most one per date, in any order."""

    def __post_init__(self) -> None:
        _require_not_negative(self.price, record="line", field="price")
        _require_positive_estimate(self.estimated_cost, record="line")
        seen: set[dt.date] = set()
        for item in self.costs:
            record = f"cost[{item.date.isoformat()}]"
            _require_currency(
                item.amount, self.estimated_cost.currency, record=record, field="amount"
            )
            if item.date in seen:
                raise InvalidInput("two cost measurements on the same date", record=record)
            seen.add(item.date)

    @property
    def currency(self) -> str:
        return self.price.currency

    @property
    def transaction_price(self) -> Money | None:
        return self.price


@dataclass(frozen=True, slots=True)
class MilestoneTerms:
    """What ``milestone`` needs: the accepted milestones and, if known, the price."""

    method: ClassVar[RevenueMethod] = RevenueMethod.MILESTONE

    currency: str
    """ISO 4217 code of the contract line."""
    acceptances: tuple[MilestoneAcceptance, ...]
    """Milestones accepted so far, each id once."""
    price: Money | None = None
    """Total fixed fee; when given, accepted amounts may not add up to more."""

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for item in self.acceptances:
            record = f"milestone[{item.id}]"
            _require_currency(item.amount, self.currency, record=record, field="amount")
            if item.id in seen:
                raise InvalidInput("accepted more than once", record=record)
            seen.add(item.id)
        if self.price is not None:
            _require_currency(self.price, self.currency, record="line", field="price")
            accepted = Money.sum((a.amount for a in self.acceptances), self.currency)
            if accepted > self.price:
                raise InvalidInput(
                    f"accepted milestones total {accepted}, more than the price {self.price}",
                    record="line",
                    field="price",
                )

    @property
    def transaction_price(self) -> Money | None:
        return self.price


@dataclass(frozen=True, slots=True)
class RatableTerms:
    """What ``ratable`` needs: the fee and the term it pays for."""

    method: ClassVar[RevenueMethod] = RevenueMethod.RATABLE

    fee: Money
    """The whole fee for the term (not a monthly rate)."""
    term: RevenuePeriod
    """The service term, both dates inclusive."""

    def __post_init__(self) -> None:
        _require_not_negative(self.fee, record="line", field="fee")

    @property
    def currency(self) -> str:
        return self.fee.currency

    @property
    def transaction_price(self) -> Money | None:
        return self.fee


RevenueTerms: TypeAlias = RightToInvoiceTerms | CostToCostTerms | MilestoneTerms | RatableTerms
"""The inputs of one contract line; its type selects the revenue method."""


# -- results ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RevenueLine:
    """Revenue of one period, and cumulative revenue to its end."""

    period_start: dt.date
    period_end: dt.date
    amount: Money
    """Recognised in this period; negative only for a downward catch-up."""
    cumulative: Money
    """Recognised from the start of the contract line to ``period_end``."""


@dataclass(frozen=True, slots=True)
class RevenueSchedule:
    """The revenue schedule of one contract line over consecutive periods."""

    contract_line_id: str
    method: RevenueMethod
    currency: str
    transaction_price: Money | None
    """The fixed price or fee; None when consideration is variable (T&M)."""
    lines: tuple[RevenueLine, ...]

    @property
    def total(self) -> Money:
        """Revenue recognised within the schedule's periods."""
        return Money.sum((line.amount for line in self.lines), self.currency)

    @property
    def cumulative(self) -> Money:
        """Revenue recognised to the end of the last period (input to contract balances)."""
        return self.lines[-1].cumulative if self.lines else Money.zero(self.currency)


@dataclass(frozen=True, slots=True)
class ContractBalance:
    """Contract asset and liability of one contract line at a date.

    At most one of the two is non-zero: revenue ahead of billing is an asset
    (unbilled receivable), billing ahead of revenue a liability (deferred revenue).
    """

    asset: Money
    liability: Money


# -- the methods --------------------------------------------------------------

_Cumulative = Callable[[dt.date], int]
"""Cumulative revenue, in minor units, to the end of the given day."""


def _share(whole: int, numerator: int, denominator: int) -> int:
    """``whole × numerator / denominator`` rounded half-up, exactly, for whole ≥ 0."""
    quotient, remainder = divmod(whole * numerator, denominator)
    return quotient + (1 if 2 * remainder >= denominator else 0)


def _lines(
    periods: Sequence[RevenuePeriod], currency: str, cumulative: _Cumulative
) -> tuple[RevenueLine, ...]:
    _check_consecutive(periods)
    lines: list[RevenueLine] = []
    for period in periods:
        before = 0 if period.start == dt.date.min else cumulative(period.start - _ONE_DAY)
        to_end = cumulative(period.end)
        lines.append(
            RevenueLine(
                period_start=period.start,
                period_end=period.end,
                amount=Money(to_end - before, currency),
                cumulative=Money(to_end, currency),
            )
        )
    return tuple(lines)


def _sum_to(items: Iterable[tuple[dt.date, Money]], day: dt.date) -> int:
    return sum(amount.minor for when, amount in items if when <= day)


def recognise_right_to_invoice(
    terms: RightToInvoiceTerms, periods: Sequence[RevenuePeriod]
) -> tuple[RevenueLine, ...]:
    """T&M revenue: work dated in each period, stopping at the cap.

    Work dated before the first period counts toward the cap (it was earned
    earlier), so a cap already used up leaves nothing for the periods asked for.
    """
    items = [(w.date, w.amount) for w in terms.work]
    cap = terms.cap.minor if terms.cap is not None else None

    def cumulative(day: dt.date) -> int:
        earned = _sum_to(items, day)
        return earned if cap is None else min(earned, cap)

    return _lines(periods, terms.currency, cumulative)


def recognise_cost_to_cost(
    terms: CostToCostTerms, periods: Sequence[RevenuePeriod]
) -> tuple[RevenueLine, ...]:
    """Fixed-fee revenue by cost incurred against estimated cost at completion.

    Cumulative revenue at a day uses the latest cost measurement on or before
    it and the estimate in force then (the latest revision, else the initial
    one), capped at the price when cost runs past the estimate. Period revenue
    is the change in that cumulative figure, so an estimate revision or a cost
    reversal is recognised as a catch-up in the period where it happens.
    """
    measurements = sorted(terms.costs, key=lambda c: c.date)
    price = terms.price.minor

    def cumulative(day: dt.date) -> int:
        cost: Money | None = None
        estimate = terms.estimated_cost
        for item in measurements:
            if item.date > day:
                break
            cost = item.amount
            if item.estimate_at_completion is not None:
                estimate = item.estimate_at_completion
        if cost is None:
            return 0
        return min(price, _share(price, cost.minor, estimate.minor))

    return _lines(periods, terms.currency, cumulative)


def recognise_milestones(
    terms: MilestoneTerms, periods: Sequence[RevenuePeriod]
) -> tuple[RevenueLine, ...]:
    """Output-method revenue: each milestone's amount in the period it was accepted."""
    items = [(a.date, a.amount) for a in terms.acceptances]
    return _lines(periods, terms.currency, lambda day: _sum_to(items, day))


def recognise_ratable(
    terms: RatableTerms, periods: Sequence[RevenuePeriod]
) -> tuple[RevenueLine, ...]:
    """Ratable revenue: fee × days of the term elapsed / days in the term.

    The cumulative figure is rounded, not each period's share, so over the
    whole term the lines add up to the fee to the minor unit. Periods outside
    the term get zero.
    """
    fee = terms.fee.minor
    term = terms.term
    term_days = term.days

    def cumulative(day: dt.date) -> int:
        if day < term.start:
            return 0
        elapsed = min(day, term.end)
        return _share(fee, (elapsed - term.start).days + 1, term_days)

    return _lines(periods, terms.currency, cumulative)


def build_schedule(
    contract_line_id: str, terms: RevenueTerms, periods: Sequence[RevenuePeriod]
) -> RevenueSchedule:
    """The revenue schedule of one contract line over consecutive ``periods``.

    The method follows from the type of ``terms``, so a line cannot be given
    inputs of one method and recognised by another.
    """
    lines: tuple[RevenueLine, ...]
    match terms:
        case RightToInvoiceTerms():
            lines = recognise_right_to_invoice(terms, periods)
        case CostToCostTerms():
            lines = recognise_cost_to_cost(terms, periods)
        case MilestoneTerms():
            lines = recognise_milestones(terms, periods)
        case RatableTerms():
            lines = recognise_ratable(terms, periods)
        case _:
            assert_never(terms)
    return RevenueSchedule(
        contract_line_id=contract_line_id,
        method=terms.method,
        currency=terms.currency,
        transaction_price=terms.transaction_price,
        lines=lines,
    )


def contract_balances(revenue_to_date: Money, billed_to_date: Money) -> ContractBalance:
    """Contract asset and liability of a contract line from its two running totals.

    Netting per contract line is what the standards ask; the two amounts must be
    in the same currency (Money raises CurrencyMismatch otherwise).
    """
    difference = revenue_to_date - billed_to_date
    currency = difference.currency
    return ContractBalance(
        asset=Money(max(difference.minor, 0), currency),
        liability=Money(max(-difference.minor, 0), currency),
    )
