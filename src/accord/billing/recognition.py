"""Revenue recognition of a billing run: what each contract line has earned by ``as_of``.

A billing run says what is *invoiced*; this module puts next to it what is
*earned* (DOMAIN.md part 3), line by line, and the contract asset or liability
that the gap between the two leaves. It reads the same world the run read and
the run itself, and delegates the arithmetic of each method to
:mod:`accord.billing.revenue`; what it adds is the mapping from a contract
line's model to a revenue method and its inputs:

======================  ===============================================================
line model              how it earns
======================  ===============================================================
time_and_materials      right to invoice: what earlier runs and this run bill on it,
                        never more than the cap
fixed_progress          cost to cost with ``estimated_cost`` and reported
                        ``cost_to_date``; otherwise latest percent complete × price
fixed_milestone         the amounts of milestones accepted (or billed) by ``as_of``
recurring               ratable: the period's prorated fee over its active days
managed_service         ratable fee over the period, plus overage as right to invoice
usage                   right to invoice: the charge for the period's usage
prepaid_block           right to invoice: hours used × rate (+ overage); the fee
                        billed up front is deferred until the hours are used
======================  ===============================================================

Expenses billed on a line other than time and materials are revenue when billed
(right to invoice), on top of the line's own method.

What "billed before" means follows the engine: ``prior_billed`` amounts, the
percentage already billed on a fixed-progress line, milestones with status
``billed``. On period lines (managed service, recurring, usage) ``prior_billed``
covers the current period only, so their figures "to date" start with the period.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from operator import attrgetter

from accord.billing.engine import fmt, price_text
from accord.billing.model import (
    BillingRun,
    BillingWorld,
    Contract,
    ContractLine,
    FixedMilestoneLine,
    FixedProgressLine,
    InvoiceLine,
    LineKind,
    ManagedServiceLine,
    PrepaidBlockLine,
    ProgressReport,
    RecurringLine,
    TimeAndMaterialsLine,
    TimeEntry,
    UsageLine,
    UsageRecord,
)
from accord.billing.pricing import active_days, days_inclusive, milestone_amounts, usage_charge
from accord.billing.rates import round_hours
from accord.billing.revenue import (
    CostToCostTerms,
    CostToDate,
    MilestoneAcceptance,
    MilestoneTerms,
    RatableTerms,
    RevenueMethod,
    RevenuePeriod,
    RevenueTerms,
    RightToInvoiceTerms,
    WorkValue,
    build_schedule,
    contract_balances,
)
from accord.domain.money import Money

__all__ = ["LineRevenue", "recognise_run"]

_HUNDRED = Decimal(100)
_ZERO = Decimal(0)
_ONE_DAY = timedelta(days=1)

_Cumulative = Callable[[date], Money]
"""Revenue earned on a line from its start to the end of the given day."""


@dataclass(frozen=True, slots=True)
class LineRevenue:
    """Revenue and contract balance of one contract line at the run's ``as_of``."""

    contract: str
    contract_line: str
    method: RevenueMethod
    """The line's revenue method; percent complete is reported as the output method
    (``milestone``)."""
    currency: str
    """The contract currency; every amount below is in it."""
    period_start: date
    period_end: date
    """The run's period, both ends inclusive."""
    period_revenue: Money
    """Earned within the period, up to ``as_of`` when the period ends later."""
    cumulative_revenue: Money
    """Earned from the start of the line (of the period, on period lines) to ``as_of``."""
    billed_to_date: Money
    """Billed by earlier runs plus what this run bills on the line."""
    contract_asset: Money
    """Earned, not yet billed: max(0, cumulative revenue − billed to date)."""
    contract_liability: Money
    """Billed, not yet earned: max(0, billed to date − cumulative revenue)."""
    trace: str
    """How the figures came about, in words."""


@dataclass(frozen=True, slots=True)
class _Earning:
    """How one line earns: its method, its cumulative revenue, what was billed before."""

    method: RevenueMethod
    cumulative: _Cumulative
    billed_before: Money
    how: str
    """The revenue to ``as_of`` explained in words."""


def recognise_run(world: BillingWorld, run: BillingRun) -> tuple[LineRevenue, ...]:
    """Revenue and contract balances of every contract line of ``world`` after ``run``.

    ``run`` must be the run of ``world`` (``run_billing(world)``); lines are
    returned in the order of the contracts and their lines.
    """
    return _Recogniser(world, run).recognise()


def _of(terms: RevenueTerms, line_id: str) -> _Cumulative:
    """The cumulative revenue of ``terms``, day by day, as revenue.py computes it."""

    def cumulative(day: date) -> Money:
        return build_schedule(line_id, terms, (RevenuePeriod(day, day),)).cumulative

    return cumulative


def _increments(points: Sequence[tuple[date, Money]], currency: str) -> tuple[WorkValue, ...]:
    """Dated work values whose running total follows ``points`` (a rising cumulative value).

    Rounding the running total rather than each step keeps the total exact.
    """
    work: list[WorkValue] = []
    previous = Money.zero(currency)
    for day, total in points:
        if total != previous:
            work.append(WorkValue(day, total - previous))
            previous = total
    return tuple(work)


def _m(amount: Money) -> str:
    return f"{amount.format()} {amount.currency}"


class _Recogniser:
    """Indexes of the world and the run that every line needs."""

    def __init__(self, world: BillingWorld, run: BillingRun) -> None:
        self.world = world
        self.as_of = world.as_of
        self.items: dict[str, list[InvoiceLine]] = defaultdict(list)
        for invoice in run.invoices:
            for item in invoice.lines:
                self.items[item.contract_line].append(item)
        self.prior_amount: dict[str, Decimal] = defaultdict(Decimal)
        self.prior_percent: dict[str, Decimal] = defaultdict(Decimal)
        for prior in world.prior_billed:
            if prior.amount is not None:
                self.prior_amount[prior.contract_line] += prior.amount
            if prior.percent is not None:
                self.prior_percent[prior.contract_line] += prior.percent
        self.time_dates = {entry.id: entry.date for entry in world.time_entries}
        self.expense_dates = {expense.id: expense.date for expense in world.expenses}
        # Time that counts as used: approved, billable and dated on or before as_of,
        # whether billed before or not (as the engine counts hours of blocks and services).
        self.time: dict[str, list[TimeEntry]] = defaultdict(list)
        for entry in sorted(world.time_entries, key=attrgetter("date", "id")):
            if entry.status == "approved" and entry.billable and entry.date <= self.as_of:
                self.time[world.projects[entry.project].contract_line].append(entry)
        self.progress: dict[str, list[ProgressReport]] = defaultdict(list)
        for report in world.progress:
            self.progress[report.contract_line].append(report)
        self.usage: dict[str, list[UsageRecord]] = defaultdict(list)
        for record in world.usage:
            self.usage[record.contract_line].append(record)
        self.events = {event.id: event for event in world.milestones}

    def recognise(self) -> tuple[LineRevenue, ...]:
        return tuple(
            self._line_revenue(contract, line)
            for contract in self.world.contracts
            for line in contract.lines
        )

    # -- the figures ------------------------------------------------------

    def _line_revenue(self, contract: Contract, line: ContractLine) -> LineRevenue:
        currency = contract.currency
        earning = self._earning(line, currency)
        billed_now = Money.sum((item.amount for item in self.items[line.id]), currency)
        billed = earning.billed_before + billed_now
        cumulative = earning.cumulative(self.as_of)
        balance = contract_balances(cumulative, billed)
        trace = (
            f"{earning.how}; billed {earning.billed_before.format()} before + "
            f"{billed_now.format()} now = {_m(billed)}"
        )
        if balance.asset:
            trace += f" → contract asset {_m(balance.asset)}"
        elif balance.liability:
            trace += f" → contract liability {_m(balance.liability)}"
        return LineRevenue(
            contract=contract.id,
            contract_line=line.id,
            method=earning.method,
            currency=currency,
            period_start=self.world.period_start,
            period_end=self.world.period_end,
            period_revenue=self._in_period(earning.cumulative, currency),
            cumulative_revenue=cumulative,
            billed_to_date=billed,
            contract_asset=balance.asset,
            contract_liability=balance.liability,
            trace=trace,
        )

    def _in_period(self, cumulative: _Cumulative, currency: str) -> Money:
        """Revenue of the period to ``as_of``: cumulative at its end − the day before it."""
        start = self.world.period_start
        end = min(self.world.period_end, self.as_of)
        if end < start:
            return Money.zero(currency)
        before = cumulative(start - _ONE_DAY) if start > date.min else Money.zero(currency)
        return cumulative(end) - before

    def _earning(self, line: ContractLine, currency: str) -> _Earning:
        if isinstance(line, TimeAndMaterialsLine):
            return self._time_and_materials(line, currency)
        earning: _Earning
        if isinstance(line, FixedProgressLine):
            earning = self._progress(line, currency)
        elif isinstance(line, FixedMilestoneLine):
            earning = self._milestones(line, currency)
        elif isinstance(line, RecurringLine):
            earning = self._recurring(line, currency)
        elif isinstance(line, ManagedServiceLine):
            earning = self._managed_service(line, currency)
        elif isinstance(line, UsageLine):
            earning = self._usage(line, currency)
        else:
            earning = self._prepaid_block(line, currency)
        return self._with_expenses(earning, line.id, currency)

    def _prior(self, line_id: str, currency: str) -> Money:
        return Money.from_decimal(self.prior_amount.get(line_id, _ZERO), currency)

    def _work_billed_now(self, line_id: str, kinds: set[LineKind]) -> list[WorkValue]:
        """This run's invoice lines of ``kinds`` on the line, dated by their source."""
        work = []
        for item in self.items[line_id]:
            if item.kind not in kinds:
                continue
            dates = self.time_dates if item.kind is LineKind.TIME else self.expense_dates
            work.append(WorkValue(dates.get(item.sources[0], self.as_of), item.amount))
        return work

    def _with_expenses(self, earning: _Earning, line_id: str, currency: str) -> _Earning:
        """Expenses billed now on a line of another model are earned as billed."""
        work = self._work_billed_now(line_id, {LineKind.EXPENSE})
        if not work:
            return earning
        expenses = _of(RightToInvoiceTerms(currency, tuple(work)), line_id)
        own = earning.cumulative

        def cumulative(day: date) -> Money:
            return own(day) + expenses(day)

        total = Money.sum((w.amount for w in work), currency)
        return _Earning(
            earning.method,
            cumulative,
            earning.billed_before,
            f"{earning.how}; + expenses billed now {_m(total)} (right to invoice)",
        )

    # -- one function per line model ----------------------------------------

    def _time_and_materials(self, line: TimeAndMaterialsLine, currency: str) -> _Earning:
        prior = self._prior(line.id, currency)
        # What earlier runs billed was earned before anything this run bills.
        work = [WorkValue(date.min, prior)] if prior else []
        work += self._work_billed_now(line.id, {LineKind.TIME, LineKind.EXPENSE})
        cap = Money.from_decimal(line.cap, currency) if line.cap is not None else None
        terms = RightToInvoiceTerms(currency, tuple(work), cap)
        value = Money.sum((w.amount for w in work), currency)
        how = f"right to invoice: approved billable work billed on the line {_m(value)}"
        if cap is not None and value > cap:
            how += f", capped at {_m(cap)}"
        return _Earning(RevenueMethod.RIGHT_TO_INVOICE, _of(terms, line.id), prior, how)

    def _progress(self, line: FixedProgressLine, currency: str) -> _Earning:
        price = Money.from_decimal(line.amount, currency)
        billed_before = price.times(self.prior_percent.get(line.id, _ZERO) / _HUNDRED)
        reports = [r for r in self.progress[line.id] if r.date <= self.as_of]
        estimate = (
            Money.from_decimal(line.estimated_cost, currency)
            if line.estimated_cost is not None
            else None
        )
        costed = [r for r in self.progress[line.id] if r.cost_to_date is not None]
        # An estimate below the minor unit rounds to nothing: there is no ratio to take,
        # so such a line falls back to percent complete rather than fail the run.
        if estimate is not None and estimate.minor > 0 and costed:
            costs: dict[date, Money] = {}
            for report in reports:  # the first report of a day, like the engine's latest
                if report.cost_to_date is not None and report.date not in costs:
                    costs[report.date] = Money.from_decimal(report.cost_to_date, currency)
            terms = CostToCostTerms(
                price, estimate, tuple(CostToDate(day, cost) for day, cost in costs.items())
            )
            cumulative = _of(terms, line.id)
            if costs:
                last = max(costs)
                how = (
                    f"cost to cost: {costs[last].format()} cost to date on {last} / "
                    f"{estimate.format()} estimated cost × {price.format()} = "
                    f"{_m(cumulative(self.as_of))}"
                )
            else:
                how = f"cost to cost: no cost reported by {self.as_of}"
            return _Earning(RevenueMethod.COST_TO_COST, cumulative, billed_before, how)

        def percent_complete(day: date) -> Money:
            latest = max(
                (r for r in reports if r.date <= day), key=attrgetter("date"), default=None
            )
            if latest is None:
                return Money.zero(currency)
            return price.times(latest.percent_complete / _HUNDRED)

        latest = max(reports, key=attrgetter("date"), default=None)
        if latest is None:
            how = f"output method: no progress reported by {self.as_of}"
        else:
            how = (
                f"output method: {fmt(latest.percent_complete)} % complete on {latest.date} × "
                f"{price.format()} = {_m(percent_complete(self.as_of))}"
            )
        return _Earning(RevenueMethod.MILESTONE, percent_complete, billed_before, how)

    def _milestones(self, line: FixedMilestoneLine, currency: str) -> _Earning:
        acceptances: list[MilestoneAcceptance] = []
        billed_before = Money.zero(currency)
        words: list[str] = []
        for milestone, share in zip(
            line.milestones, milestone_amounts(line, currency), strict=True
        ):
            event = self.events.get(milestone.id)
            if event is None:
                continue
            if event.status == "billed":
                billed_before += share
                day = event.date or date.min  # undated: accepted in an earlier run
            elif event.status == "accepted" or (
                event.status == "reached" and not milestone.acceptance_required
            ):
                day = event.date or self.as_of  # undated: accepted as of this run
            else:
                continue
            if day <= self.as_of:
                acceptances.append(MilestoneAcceptance(milestone.id, day, share))
                words.append(f"{milestone.id} {share.format()}")
        terms = MilestoneTerms(currency, tuple(acceptances))
        cumulative = _of(terms, line.id)
        how = (
            f"milestones accepted by {self.as_of}: "
            + (" + ".join(words) if words else "none")
            + f" = {_m(cumulative(self.as_of))}"
        )
        return _Earning(RevenueMethod.MILESTONE, cumulative, billed_before, how)

    def _recurring(self, line: RecurringLine, currency: str) -> _Earning:
        start, end = self.world.period_start, self.world.period_end
        prior = self._prior(line.id, currency)
        days = active_days(start, end, line.start, line.end)
        if days == 0:
            return _Earning(
                RevenueMethod.RATABLE,
                lambda day: Money.zero(currency),
                prior,
                f"ratable: not active in {start}..{end}",
            )
        first = max(start, line.start) if line.start else start
        last = min(end, line.end) if line.end else end
        period_days = days_inclusive(start, end)
        fee = Money.from_decimal(line.amount * days / period_days, currency)
        cumulative = _of(RatableTerms(fee, RevenuePeriod(first, last)), line.id)
        elapsed = max(0, min(days, (self.as_of - first).days + 1))
        how = (
            f"ratable: {price_text(line.amount, currency)} × {days}/{period_days} days = "
            f"{fee.format()} over {first}..{last}, {elapsed}/{days} days elapsed = "
            f"{_m(cumulative(self.as_of))}"
        )
        return _Earning(RevenueMethod.RATABLE, cumulative, prior, how)

    def _managed_service(self, line: ManagedServiceLine, currency: str) -> _Earning:
        start, end = self.world.period_start, self.world.period_end
        period_days = days_inclusive(start, end)
        fee = Money.from_decimal(line.fee, currency)
        fee_part = _of(RatableTerms(fee, RevenuePeriod(start, end)), line.id)
        used = _ZERO
        points: list[tuple[date, Money]] = []
        for entry in self.time[line.id]:
            if start <= entry.date <= end:
                used += round_hours(entry.hours, line.rounding)
                over = max(_ZERO, used - line.included_hours)
                points.append((entry.date, Money.from_decimal(over * line.overage_rate, currency)))
        overage = points[-1][1] if points else Money.zero(currency)
        overage_part = _of(RightToInvoiceTerms(currency, _increments(points, currency)), line.id)

        def cumulative(day: date) -> Money:
            return fee_part(day) + overage_part(day)

        elapsed = max(0, min(period_days, (self.as_of - start).days + 1))
        how = (
            f"ratable fee {fee.format()} × {elapsed}/{period_days} days = "
            f"{fee_part(self.as_of).format()}"
        )
        if overage:
            how += (
                f" + overage {fmt(used)} h used − {fmt(line.included_hours)} h included × "
                f"{price_text(line.overage_rate, currency)} = {overage.format()} "
                f"(right to invoice) = {_m(cumulative(self.as_of))}"
            )
        else:
            how += f" {currency}"
        return _Earning(RevenueMethod.RATABLE, cumulative, self._prior(line.id, currency), how)

    def _usage(self, line: UsageLine, currency: str) -> _Earning:
        start, end = self.world.period_start, self.world.period_end
        records = [
            r for r in self.usage[line.id] if start <= r.date <= end and r.date <= self.as_of
        ]
        work: tuple[WorkValue, ...] = ()
        how = f"right to invoice: no usage in {start}..{end} by {self.as_of}"
        if records:
            quantity = sum((r.quantity for r in records), _ZERO)
            value, words = usage_charge(line, quantity)
            charge = Money.from_decimal(value, currency)
            work = (WorkValue(max(r.date for r in records), charge),)
            how = f"right to invoice: {fmt(quantity)} units used, {words} = {_m(charge)}"
        terms = RightToInvoiceTerms(currency, work)
        return _Earning(
            RevenueMethod.RIGHT_TO_INVOICE, _of(terms, line.id), self._prior(line.id, currency), how
        )

    def _prepaid_block(self, line: PrepaidBlockLine, currency: str) -> _Earning:
        overage_rate = line.overage_rate if line.overage_rate is not None else line.rate
        used = _ZERO

        def value(hours: Decimal) -> Money:
            inside = Money.from_decimal(min(hours, line.hours) * line.rate, currency)
            beyond = max(_ZERO, hours - line.hours)
            return inside + Money.from_decimal(beyond * overage_rate, currency)

        points: list[tuple[date, Money]] = []
        for entry in self.time[line.id]:
            used += round_hours(entry.hours, line.rounding)
            points.append((entry.date, value(used)))
        terms = RightToInvoiceTerms(currency, _increments(points, currency))
        cumulative = _of(terms, line.id)
        how = (
            f"right to invoice: {fmt(min(used, line.hours))} of the {fmt(line.hours)} h block "
            f"used × {price_text(line.rate, currency)}"
        )
        if used > line.hours:
            how += f" + {fmt(used - line.hours)} h over × {price_text(overage_rate, currency)}"
        how += f" = {_m(cumulative(self.as_of))}"
        return _Earning(
            RevenueMethod.RIGHT_TO_INVOICE, cumulative, self._prior(line.id, currency), how
        )
