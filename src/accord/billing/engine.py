"""The billing run: sources and contracts in, one invoice per contract out.

``run_billing`` is a pure function of a :class:`~accord.billing.model.BillingWorld`.
It bills the difference between what is billable and what earlier runs billed:
sources marked billed, milestones billed, progress and period fees in
``prior_billed`` are never billed again, so folding a run's output back into its
input and running again bills nothing more.

Order of work per source (DOMAIN.md part 2): price in the source currency (rate
card or receipt) and round half-up to its minor unit; convert to the invoice
currency at the latest rate on or before ``as_of`` and round again; apply the
markup; then caps in (date, id) order, splitting the item that crosses; then tax.
Every invoice line carries a trace that explains its amount in words.
"""

from __future__ import annotations

import gc
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from operator import attrgetter

from accord.billing.fx import FxTable, MissingFxRate
from accord.billing.model import (
    Account,
    Adjustment,
    AdjustmentKind,
    BillingRun,
    BillingWorld,
    Contract,
    ContractLine,
    Expense,
    FixedMilestoneLine,
    FixedProgressLine,
    Intercompany,
    IntercompanyLine,
    Invoice,
    InvoiceLine,
    LineKind,
    ManagedServiceLine,
    OverageAction,
    OverageItem,
    PrepaidBlockLine,
    ProgressReport,
    RateCard,
    RecurringLine,
    Rounding,
    Skipped,
    SkipReason,
    TaxRule,
    TimeAndMaterialsLine,
    TimeEntry,
    UsageLine,
    UsageRecord,
)
from accord.billing.pricing import active_days, days_inclusive, milestone_amounts, usage_charge
from accord.billing.rates import RateResolver, ResolvedRate, round_hours
from accord.billing.tax import DEFAULT_REVERSE_CHARGE_LEGEND, NoTaxRule, find_rule, tax_lines
from accord.domain.money import Money, currency_digits, round_half_up
from accord.errors import InvalidInput

__all__ = ["BillingInputError", "fmt", "price_text", "run_billing"]

_HUNDRED = Decimal(100)
_ZERO = Decimal(0)
_QTY_PLACES = 4
_by_date_id = attrgetter("date", "id")


class BillingInputError(InvalidInput):
    """The world is inconsistent in a way only pricing discovers (no rate, no FX)."""


def fmt(value: Decimal) -> str:
    """A decimal as plain text without exponent or trailing zeros (7.50 → 7.5)."""
    if value == value.to_integral_value():
        return format(value.quantize(Decimal(1)), "f")
    return format(value.normalize(), "f")


def price_text(value: Decimal, currency: str) -> str:
    """A unit price with at least the currency's digits (220 → 220.00, 0.005 stays)."""
    digits = currency_digits(currency)
    exact = value.normalize()
    exponent = exact.as_tuple().exponent
    assert isinstance(exponent, int)
    if -exponent < digits:
        return format(value.quantize(Decimal(1).scaleb(-digits)), "f")
    return format(exact, "f")


@dataclass(slots=True)
class _Item:
    """One future invoice line before tax, in the invoice currency."""

    kind: LineKind
    contract_line: str
    quantity: Decimal
    unit_price: Decimal
    amount: Money
    sources: tuple[str, ...]
    trace: str
    category: str | None
    source_currency: str | None = None
    source_amount: Money | None = None
    day: date = date.min
    sid: str = ""


@dataclass(slots=True)
class _Ledger:
    """What a run accumulates besides invoices."""

    held: list[OverageItem] = field(default_factory=list)
    written_off: list[OverageItem] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    recharges: dict[tuple[str, str, str], list[IntercompanyLine]] = field(
        default_factory=lambda: defaultdict(list)
    )


class _Run:
    """State of one billing run; the public surface is :func:`run_billing`."""

    def __init__(self, world: BillingWorld) -> None:
        self.world = world
        self.as_of = world.as_of
        self.fx = FxTable(world.fx_rates)
        self.resolvers = {cid: RateResolver(card) for cid, card in world.rate_cards.items()}
        self.ledger = _Ledger()
        prior_amount: dict[str, Decimal] = defaultdict(Decimal)
        prior_percent: dict[str, Decimal] = defaultdict(Decimal)
        for prior in world.prior_billed:
            if prior.amount is not None:
                prior_amount[prior.contract_line] += prior.amount
            if prior.percent is not None:
                prior_percent[prior.contract_line] += prior.percent
        self.prior_amount = prior_amount
        self.prior_percent = prior_percent
        self.adjustments: dict[str, list[Adjustment]] = defaultdict(list)
        for adjustment in world.adjustments:
            self.adjustments[adjustment.source].append(adjustment)
        self.milestone_events = {event.id: event for event in world.milestones}
        self.progress_by_line: dict[str, list[ProgressReport]] = defaultdict(list)
        for report in world.progress:
            self.progress_by_line[report.contract_line].append(report)
        self.usage_by_line: dict[str, list[UsageRecord]] = defaultdict(list)
        for record in world.usage:
            self.usage_by_line[record.contract_line].append(record)
        self._rate_texts: dict[tuple[int, str], tuple[str, Decimal]] = {}
        self._hour_texts: dict[Decimal, str] = {}
        self._classify_sources()

    # -- sources ----------------------------------------------------------

    def _skip(self, source: str, reason: SkipReason) -> None:
        self.ledger.skipped.append(Skipped(source, reason))

    def _classify_sources(self) -> None:
        """One pass over time and expenses: skip what cannot bill, bucket the rest by line.

        Billed entries stay in the buckets (flagged) because managed-service and
        prepaid lines count hours already consumed; they are never billed again.
        """
        as_of = self.as_of
        projects = self.world.projects
        skip = self._skip
        time_by_line: dict[str, list[TimeEntry]] = defaultdict(list)
        for entry in self.world.time_entries:
            if entry.status != "approved":
                skip(entry.id, SkipReason.NOT_APPROVED)
            elif not entry.billable:
                skip(entry.id, SkipReason.NON_BILLABLE)
            elif entry.date > as_of:
                skip(entry.id, SkipReason.AFTER_AS_OF)
            else:
                if entry.billed:
                    skip(entry.id, SkipReason.ALREADY_BILLED)
                time_by_line[projects[entry.project].contract_line].append(entry)
        expenses_by_line: dict[str, list[Expense]] = defaultdict(list)
        for expense in self.world.expenses:
            if expense.status not in ("approved", "reimbursed"):
                skip(expense.id, SkipReason.NOT_APPROVED)
            elif not expense.billable:
                skip(expense.id, SkipReason.NON_BILLABLE)
            elif expense.date > as_of:
                skip(expense.id, SkipReason.AFTER_AS_OF)
            elif expense.billed:
                skip(expense.id, SkipReason.ALREADY_BILLED)
            else:
                expenses_by_line[projects[expense.project].contract_line].append(expense)
        self.time_by_line = time_by_line
        self.expenses_by_line = expenses_by_line

    # -- the run ----------------------------------------------------------

    def run(self) -> BillingRun:
        invoices = []
        for contract in self.world.contracts:
            invoice = self._bill_contract(contract)
            if invoice is not None:
                invoices.append(invoice)
        ledger = self.ledger
        return BillingRun(
            as_of=self.as_of,
            invoices=tuple(invoices),
            held=tuple(ledger.held),
            written_off=tuple(ledger.written_off),
            skipped=tuple(ledger.skipped),
            intercompany=self._intercompany(),
        )

    def _bill_contract(self, contract: Contract) -> Invoice | None:
        items: list[_Item] = []
        for line in contract.lines:
            items.extend(self._bill_line(contract, line))
        if not items:
            return None
        return self._invoice(contract, items)

    def _bill_line(self, contract: Contract, line: ContractLine) -> list[_Item]:
        time = self.time_by_line.get(line.id, [])
        expenses = [
            self._expense_item(contract, line, e) for e in self.expenses_by_line.get(line.id, [])
        ]
        if isinstance(line, TimeAndMaterialsLine):
            return self._time_and_materials(contract, line, time, expenses)
        if isinstance(line, ManagedServiceLine):
            items = self._managed_service(contract, line, time)
        elif isinstance(line, PrepaidBlockLine):
            items = self._prepaid_block(contract, line, time)
        else:
            for entry in time:
                if not entry.billed:
                    self._skip(entry.id, SkipReason.FIXED_FEE)
            if isinstance(line, FixedMilestoneLine):
                items = self._milestones(contract, line)
            elif isinstance(line, FixedProgressLine):
                items = self._progress(contract, line)
            elif isinstance(line, RecurringLine):
                items = self._recurring(contract, line)
            else:
                items = self._usage(contract, line)
        expenses.sort(key=lambda item: (item.day, item.sid))
        return items + expenses

    # -- time and materials ----------------------------------------------

    def _convert(self, amount: Money, contract: Contract, record: str) -> tuple[Money, str]:
        if amount.currency == contract.currency:
            return amount, ""
        try:
            quote = self.fx.quote(amount.currency, contract.currency, self.as_of)
        except MissingFxRate as exc:
            raise BillingInputError(str(exc), record=record, field="currency") from None
        converted = amount.convert(quote.rate, contract.currency)
        text = (
            f"; {amount.format()} {amount.currency} × {fmt(quote.rate)} "
            f"({quote.describe(amount.currency, contract.currency)}) = "
            f"{converted.format()} {contract.currency}"
        )
        return converted, text

    def _adjusted_hours(self, entry: TimeEntry, hours: Decimal) -> tuple[Decimal, Decimal, str]:
        """Apply write-downs/ups in hours; returns hours, amount delta, and a trace."""
        delta_amount = _ZERO
        notes = []
        for adjustment in self.adjustments.get(entry.id, ()):
            sign = -1 if adjustment.kind is AdjustmentKind.WRITE_DOWN else 1
            if adjustment.hours is not None:
                hours += sign * adjustment.hours
                notes.append(f"{adjustment.kind.value} {fmt(adjustment.hours)} h")
            if adjustment.amount is not None:
                delta_amount += sign * adjustment.amount
                notes.append(f"{adjustment.kind.value} {fmt(adjustment.amount)}")
        if hours < 0:
            raise BillingInputError(
                "write-down exceeds the hours of the entry",
                record=f"time_entries[{entry.id}]",
                field="hours",
            )
        return hours, delta_amount, (" after " + ", ".join(notes)) if notes else ""

    def _rate_text(
        self, resolved: ResolvedRate, card: RateCard, currency: str
    ) -> tuple[str, Decimal]:
        """Trace fragment and invoice-currency unit price of a rate, cached per entry."""
        key = (id(resolved), currency)
        found = self._rate_texts.get(key)
        if found is None:
            unit_price = resolved.rate
            if card.currency != currency:
                quote = self.fx.quote(card.currency, currency, self.as_of)
                unit_price = round_half_up(resolved.rate * quote.rate, currency_digits(currency))
            text = (
                f" × {price_text(resolved.rate, card.currency)} {card.currency}/h "
                f"({resolved.label} on rate card {card.id}) = "
            )
            found = self._rate_texts[key] = (text, unit_price)
        return found

    def _hours_text(self, hours: Decimal) -> str:
        text = self._hour_texts.get(hours)
        if text is None:
            text = self._hour_texts[hours] = f"{fmt(hours)} h"
        return text

    def _time_item(
        self,
        contract: Contract,
        line: ContractLine,
        entry: TimeEntry,
        resolver: RateResolver,
        rounding: Rounding | None,
    ) -> _Item:
        person = self.world.people[entry.person]
        resolved = resolver.resolve(
            entry.person, person.role, entry.project, contract.account, entry.date
        )
        if resolved is None:
            raise BillingInputError(
                f"no rate on rate card {resolver.card.id} for person {entry.person}"
                f" (role {person.role}) on project {entry.project} on {entry.date}",
                record=f"time_entries[{entry.id}]",
                field="person",
            )
        card = resolver.card
        hours = round_hours(entry.hours, rounding) if rounding is not None else entry.hours
        trace_hours = self._hours_text(entry.hours)
        if rounding is not None and hours != entry.hours:
            trace_hours += (
                f" rounded {rounding.mode.value} to {fmt(rounding.increment)} → {fmt(hours)} h"
            )
        delta = _ZERO
        if entry.id in self.adjustments:
            hours, delta, note = self._adjusted_hours(entry, hours)
            trace_hours += note
        source_amount = Money.from_decimal(hours * resolved.rate + delta, card.currency)
        if source_amount.minor < 0:
            raise BillingInputError(
                "write-down exceeds the value of the entry",
                record=f"time_entries[{entry.id}]",
                field="amount",
            )
        if card.currency == contract.currency:
            amount, fx_text = source_amount, ""
        else:
            amount, fx_text = self._convert(source_amount, contract, f"time_entries[{entry.id}]")
        rate_text, unit_price = self._rate_text(resolved, card, contract.currency)
        return _Item(
            LineKind.TIME,
            line.id,
            hours,
            unit_price,
            amount,
            (entry.id,),
            f"{trace_hours}{rate_text}{source_amount.format()} {card.currency}{fx_text}",
            line.tax_category,
            card.currency,
            source_amount,
            entry.date,
            entry.id,
        )

    def _expense_item(self, contract: Contract, line: ContractLine, expense: Expense) -> _Item:
        record = f"expenses[{expense.id}]"
        source = Money.from_decimal(expense.amount, expense.currency)
        notes = ""
        for adjustment in self.adjustments.get(expense.id, ()):
            if adjustment.amount is not None:
                sign = -1 if adjustment.kind is AdjustmentKind.WRITE_DOWN else 1
                source = source + Money.from_decimal(sign * adjustment.amount, expense.currency)
                notes += f" after {adjustment.kind.value} {fmt(adjustment.amount)}"
        if source.minor < 0:
            raise BillingInputError(
                "write-down exceeds the amount of the expense", record=record, field="amount"
            )
        converted, fx_text = self._convert(source, contract, record)
        markup = expense.markup_percent
        if markup is None:
            markup = line.expense_markup_percent
        amount = converted.times(1 + markup / _HUNDRED) if markup else converted
        trace = f"expense {source.format()} {expense.currency}{notes}{fx_text}"
        if markup:
            trace += f"; + {fmt(markup)} % markup = {amount.format()} {contract.currency}"
        return _Item(
            LineKind.EXPENSE,
            line.id,
            Decimal(1),
            amount.amount,
            amount,
            (expense.id,),
            trace,
            line.tax_category,
            expense.currency,
            source,
            expense.date,
            expense.id,
        )

    def _time_and_materials(
        self,
        contract: Contract,
        line: TimeAndMaterialsLine,
        time: list[TimeEntry],
        expenses: list[_Item],
    ) -> list[_Item]:
        resolver = self.resolvers[line.rate_card]
        rounding = line.rounding
        items = [
            self._time_item(contract, line, entry, resolver, rounding)
            for entry in time
            if not entry.billed
        ]
        items.extend(expenses)
        items.sort(key=lambda item: (item.day, item.sid))
        held_before = len(self.ledger.held)
        if line.cap is not None:
            items = self._apply_cap(contract, line, items)
        # Recharge the cost of work this run bills or writes off; held work waits.
        held = {item.source for item in self.ledger.held[held_before:]}
        billed_time = {item.sid for item in items if item.kind is LineKind.TIME}
        self._recharge(
            contract,
            [e for e in time if not e.billed and (e.id in billed_time or e.id not in held)],
        )
        return items

    def _apply_cap(
        self, contract: Contract, line: TimeAndMaterialsLine, items: list[_Item]
    ) -> list[_Item]:
        assert line.cap is not None
        currency = contract.currency
        cap = Money.from_decimal(line.cap, currency)
        prior = Money.from_decimal(self.prior_amount.get(line.id, _ZERO), currency)
        remaining = max(0, cap.minor - prior.minor)
        sink = self.ledger.held if line.overage is OverageAction.HOLD else self.ledger.written_off
        action = (
            "held until a change order" if line.overage is OverageAction.HOLD else "written off"
        )
        billed: list[_Item] = []
        for item in items:
            value = item.amount.minor
            if value <= remaining:
                remaining -= value
                billed.append(item)
                continue
            billed_part = max(0, remaining)
            over = Money(value - billed_part, currency)
            remaining = 0
            over_hours = None
            if billed_part:
                part = Money(billed_part, currency)
                ratio = Decimal(billed_part) / Decimal(value)
                quantity = item.quantity
                if item.kind is LineKind.TIME:
                    quantity = round_half_up(item.quantity * ratio, _QTY_PLACES)
                    over_hours = item.quantity - quantity
                else:
                    item.unit_price = part.amount
                item.trace += (
                    f"; cap {cap.format()} {currency} with {prior.format()} billed before: "
                    f"{part.format()} billed, {over.format()} over the cap {action}"
                )
                item.quantity = quantity
                item.amount = part
                billed.append(item)
            elif item.kind is LineKind.TIME:
                over_hours = item.quantity
            sink.append(OverageItem(item.sid, line.id, over, "cap", over_hours))
        return billed

    def _recharge(self, contract: Contract, entries: list[TimeEntry]) -> None:
        """Record intercompany cost-plus recharges for work of other entities' people."""
        people = self.world.people
        for entry in entries:
            person = people[entry.person]
            if person.entity is None or person.entity == contract.entity:
                continue
            if person.cost_rate is None:
                continue
            employer = self.world.entities[person.entity]
            markup = employer.intercompany_markup_percent
            if markup is None:
                markup = self.world.intercompany_markup_percent or _ZERO
            currency = person.cost_currency or employer.currency
            amount = Money.from_decimal(
                entry.hours * person.cost_rate * (1 + markup / _HUNDRED), currency
            )
            trace = (
                f"{fmt(entry.hours)} h × {fmt(person.cost_rate)} {currency} cost × "
                f"(1 + {fmt(markup)} %) = {amount.format()} {currency}"
            )
            self.ledger.recharges[(person.entity, contract.entity, currency)].append(
                IntercompanyLine(entry.id, entry.hours, person.cost_rate, amount, trace)
            )

    def _intercompany(self) -> tuple[Intercompany, ...]:
        result = []
        for (source, target, currency), lines in self.ledger.recharges.items():
            employer = self.world.entities[source]
            markup = employer.intercompany_markup_percent
            if markup is None:
                markup = self.world.intercompany_markup_percent or _ZERO
            result.append(
                Intercompany(
                    source,
                    target,
                    currency,
                    markup,
                    tuple(lines),
                    Money.sum((line.amount for line in lines), currency),
                )
            )
        return tuple(result)

    # -- hour-based packages -----------------------------------------------

    def _period_key(self, line: ContractLine) -> str:
        return f"{line.id}:{self.world.period_start}..{self.world.period_end}"

    def _managed_service(
        self, contract: Contract, line: ManagedServiceLine, time: list[TimeEntry]
    ) -> list[_Item]:
        world = self.world
        currency = contract.currency
        in_period: list[TimeEntry] = []
        for entry in time:
            if world.period_start <= entry.date <= world.period_end:
                in_period.append(entry)
            elif not entry.billed:
                self._skip(entry.id, SkipReason.OUTSIDE_PERIOD)
        used = sum((round_hours(e.hours, line.rounding) for e in in_period), _ZERO)
        over_hours = max(_ZERO, used - line.included_hours)
        fee = Money.from_decimal(line.fee, currency)
        overage = Money.from_decimal(over_hours * line.overage_rate, currency)
        prior = Money.from_decimal(self.prior_amount.get(line.id, _ZERO), currency)
        fee_due = Money(max(0, fee.minor - prior.minor), currency)
        prior_left = max(0, prior.minor - fee.minor)
        overage_due = Money(max(0, overage.minor - prior_left), currency)
        unbilled = [e for e in in_period if not e.billed]
        items = []
        prior_note = f" less {prior.format()} billed before" if prior else ""
        if fee_due:
            items.append(
                _Item(
                    LineKind.MANAGED_FEE,
                    line.id,
                    Decimal(1),
                    fee_due.amount,
                    fee_due,
                    (self._period_key(line),),
                    f"managed-service fee {fee.format()} {currency} for {world.period_start}"
                    f"..{world.period_end} including {fmt(line.included_hours)} h{prior_note}",
                    line.tax_category,
                    day=world.period_start,
                    sid=line.id,
                )
            )
        if overage_due:
            items.append(
                _Item(
                    LineKind.MANAGED_OVERAGE,
                    line.id,
                    over_hours,
                    line.overage_rate,
                    overage_due,
                    tuple(sorted(e.id for e in unbilled)),
                    f"{fmt(used)} h used − {fmt(line.included_hours)} h included = "
                    f"{fmt(over_hours)} h × {price_text(line.overage_rate, currency)} "
                    f"{currency}/h = "
                    f"{overage.format()} {currency}"
                    + (f"; {overage_due.format()} still due" if overage_due != overage else ""),
                    line.tax_category,
                    day=world.period_end,
                    sid=line.id,
                )
            )
            self._recharge(contract, unbilled)
        else:
            for entry in unbilled:
                self._skip(entry.id, SkipReason.FIXED_FEE)
        return items

    def _prepaid_block(
        self, contract: Contract, line: PrepaidBlockLine, time: list[TimeEntry]
    ) -> list[_Item]:
        """Block fee up front, then overage for hours beyond the block.

        Like period fees, the line bills the difference between what it owes to
        date (the fee once started, plus cumulative overage) and ``prior_billed``;
        the fee is settled first. Unbilled time is linked to the invoice through
        a zero-amount drawdown line (hours inside the block) or the overage line.
        """
        currency = contract.currency
        overage_rate = line.overage_rate if line.overage_rate is not None else line.rate
        started = line.start is None or line.start <= self.as_of
        fee = Money.from_decimal(line.hours * line.rate, currency)
        if not started:
            fee = Money.zero(currency)
        consumed = _ZERO
        inside_ids: list[str] = []
        beyond_ids: list[str] = []
        inside_hours = beyond_hours = _ZERO
        consumed_now: list[TimeEntry] = []
        for entry in sorted(time, key=_by_date_id):
            hours = round_hours(entry.hours, line.rounding)
            left_in_block = max(_ZERO, line.hours - consumed)
            consumed += hours
            if entry.billed:
                continue
            consumed_now.append(entry)
            inside = min(hours, left_in_block)
            if inside:
                inside_ids.append(entry.id)
                inside_hours += inside
            if hours > inside:
                beyond_ids.append(entry.id)
                beyond_hours += hours - inside
        over_hours = max(_ZERO, consumed - line.hours)
        overage = Money.from_decimal(over_hours * overage_rate, currency)
        prior = Money.from_decimal(self.prior_amount.get(line.id, _ZERO), currency)
        fee_due = Money(max(0, fee.minor - prior.minor), currency)
        overage_due = Money(max(0, overage.minor - max(0, prior.minor - fee.minor)), currency)
        items = []
        if fee_due:
            items.append(
                _Item(
                    LineKind.PREPAID_FEE,
                    line.id,
                    line.hours,
                    line.rate,
                    fee_due,
                    (f"{line.id}:block",),
                    f"prepaid block {fmt(line.hours)} h × "
                    f"{price_text(line.rate, currency)} {currency}/h = "
                    f"{fee.format()} {currency}, invoiced up front"
                    + (f"; {fee_due.format()} still due" if fee_due != fee else ""),
                    line.tax_category,
                    day=line.start or date.min,
                    sid=line.id,
                )
            )
        if inside_ids:
            items.append(
                _Item(
                    LineKind.PREPAID_DRAWDOWN,
                    line.id,
                    inside_hours,
                    _ZERO,
                    Money.zero(currency),
                    tuple(inside_ids),
                    f"{fmt(inside_hours)} h drawn from the prepaid block "
                    f"({fmt(min(consumed, line.hours))} of {fmt(line.hours)} h used)",
                    line.tax_category,
                    day=self.as_of,
                    sid=line.id,
                )
            )
        if overage_due:
            items.append(
                _Item(
                    LineKind.PREPAID_OVERAGE,
                    line.id,
                    beyond_hours,
                    overage_rate,
                    overage_due,
                    tuple(beyond_ids) or (f"{line.id}:overage",),
                    f"{fmt(consumed)} h used − {fmt(line.hours)} h block = {fmt(over_hours)} h × "
                    f"{price_text(overage_rate, currency)} {currency}/h = "
                    f"{overage.format()} {currency}"
                    + (f"; {overage_due.format()} still due" if overage_due != overage else ""),
                    line.tax_category,
                    day=self.as_of,
                    sid=line.id,
                )
            )
        self._recharge(contract, consumed_now)
        return items

    # -- fixed fees and period fees ----------------------------------------

    def _milestones(self, contract: Contract, line: FixedMilestoneLine) -> list[_Item]:
        currency = contract.currency
        total = Money.from_decimal(line.amount, currency)
        shares = milestone_amounts(line, currency)
        items = []
        for milestone, share in zip(line.milestones, shares, strict=True):
            event = self.milestone_events.get(milestone.id)
            if event is None:
                continue
            billable = event.status == "accepted" or (
                event.status == "reached" and not milestone.acceptance_required
            )
            if event.status == "billed":
                self._skip(milestone.id, SkipReason.ALREADY_BILLED)
            elif not billable:
                self._skip(milestone.id, SkipReason.NOT_APPROVED)
            elif event.date is not None and event.date > self.as_of:
                self._skip(milestone.id, SkipReason.AFTER_AS_OF)
            else:
                how = (
                    f"{fmt(milestone.percent)} % of {total.format()} {currency}"
                    if milestone.percent is not None
                    else f"fixed amount {share.format()} {currency}"
                )
                items.append(
                    _Item(
                        LineKind.MILESTONE,
                        line.id,
                        Decimal(1),
                        share.amount,
                        share,
                        (milestone.id,),
                        f"milestone {milestone.id} {event.status}"
                        + (f" on {event.date}" if event.date else "")
                        + f": {how} = {share.format()} {currency}",
                        line.tax_category,
                        day=event.date or date.min,
                        sid=milestone.id,
                    )
                )
        return items

    def _progress(self, contract: Contract, line: FixedProgressLine) -> list[_Item]:
        currency = contract.currency
        reports = [r for r in self.progress_by_line.get(line.id, ()) if r.date <= self.as_of]
        if not reports:
            return []
        latest = max(reports, key=attrgetter("date"))
        prior_percent = self.prior_percent.get(line.id, _ZERO)
        total = Money.from_decimal(line.amount, currency)
        now = total.times(latest.percent_complete / _HUNDRED)
        before = total.times(prior_percent / _HUNDRED)
        due = now - before
        if due.minor <= 0:
            return []
        delta = latest.percent_complete - prior_percent
        return [
            _Item(
                LineKind.PROGRESS,
                line.id,
                delta / _HUNDRED,
                line.amount,
                due,
                (f"{line.id}@{latest.date}",),
                f"({fmt(latest.percent_complete)} % complete on {latest.date} − "
                f"{fmt(prior_percent)} % "
                f"billed) × {total.format()} {currency} = {now.format()} − {before.format()} = "
                f"{due.format()} {currency}",
                line.tax_category,
                day=latest.date,
                sid=line.id,
            )
        ]

    def _recurring(self, contract: Contract, line: RecurringLine) -> list[_Item]:
        world = self.world
        currency = contract.currency
        period_days = days_inclusive(world.period_start, world.period_end)
        days = active_days(world.period_start, world.period_end, line.start, line.end)
        if days == 0:
            return []
        value = Money.from_decimal(line.amount * days / period_days, currency)
        prior = Money.from_decimal(self.prior_amount.get(line.id, _ZERO), currency)
        due = value - prior
        if due.minor <= 0:
            return []
        trace = (
            f"{price_text(line.amount, currency)} {currency} × {days}/{period_days} days = "
            f"{value.format()}"
        )
        if prior:
            trace += f" less {prior.format()} billed before = {due.format()}"
        return [
            _Item(
                LineKind.RECURRING,
                line.id,
                Decimal(1),
                due.amount,
                due,
                (self._period_key(line),),
                trace + f" {currency}",
                line.tax_category,
                day=world.period_start,
                sid=line.id,
            )
        ]

    def _usage(self, contract: Contract, line: UsageLine) -> list[_Item]:
        world = self.world
        currency = contract.currency
        records = [
            r
            for r in self.usage_by_line.get(line.id, ())
            if world.period_start <= r.date <= world.period_end and r.date <= self.as_of
        ]
        if not records:
            return []
        quantity = sum((r.quantity for r in records), _ZERO)
        value, trace = usage_charge(line, quantity)
        charge = Money.from_decimal(value, currency)
        prior = Money.from_decimal(self.prior_amount.get(line.id, _ZERO), currency)
        due = charge - prior
        if due.minor <= 0:
            return []
        trace += f" = {charge.format()} {currency}"
        if prior:
            trace += f" less {prior.format()} billed before = {due.format()} {currency}"
        unit_price = (charge.amount / quantity) if quantity else _ZERO
        return [
            _Item(
                LineKind.USAGE,
                line.id,
                quantity,
                round_half_up(unit_price, 6),
                due,
                tuple(r.id or f"{line.id}@{r.date}" for r in records),
                trace,
                line.tax_category,
                day=world.period_end,
                sid=line.id,
            )
        ]

    # -- invoice ----------------------------------------------------------

    def _tax_rule(self, contract: Contract, buyer: Account, category: str | None) -> TaxRule | None:
        if not self.world.tax_rules:
            return None
        seller = self.world.entities[contract.entity]
        try:
            return find_rule(self.world.tax_rules, seller.country, buyer, category, self.as_of)
        except NoTaxRule as exc:
            raise BillingInputError(
                str(exc), record=f"contracts[{contract.id}]", field="tax_rules"
            ) from None

    def _invoice(self, contract: Contract, items: list[_Item]) -> Invoice:
        world = self.world
        currency = contract.currency
        bill_to = contract.bill_to or contract.account
        buyer = world.accounts[bill_to]
        rules: dict[str | None, TaxRule | None] = {}
        for category in {item.category for item in items}:
            rules[category] = self._tax_rule(contract, buyer, category)
        rates = []
        for item in items:
            rule = rules[item.category]
            rates.append(_ZERO if rule is None or rule.reverse_charge else rule.rate)
        amounts = [item.amount for item in items]
        taxes = tax_lines(amounts, rates, contract.tax_rounding)
        lines = tuple(
            InvoiceLine(  # positional: this runs once per billed source
                item.contract_line,
                item.kind,
                item.quantity,
                item.unit_price,
                item.amount,
                tax,
                item.sources,
                item.trace,
                rate,
                item.source_currency,
                item.source_amount,
            )
            for item, tax, rate in zip(items, taxes, rates, strict=True)
        )
        net = Money.sum(amounts, currency)
        tax_total = Money.sum(taxes, currency)
        gross = net + tax_total
        used = [rule for rule in rules.values() if rule is not None]
        reverse_charge = any(rule.reverse_charge for rule in used)
        legend = next((rule.legend for rule in used if rule.legend), None)
        if reverse_charge and legend is None:
            legend = DEFAULT_REVERSE_CHARGE_LEGEND
        if not used:
            tax_trace = "no tax table in force: no tax"
        else:
            tax_trace = (
                "; ".join(
                    f"{'reverse charge' if r.reverse_charge else fmt(r.rate * _HUNDRED) + ' %'} "
                    f"(seller {r.seller_country or 'any'}, buyer "
                    f"{r.buyer_country or r.buyer_region or 'any'})"
                    for r in dict.fromkeys(used)
                )
                + f"; rounded per {contract.tax_rounding.value}"
            )
        entity = world.entities[contract.entity]
        functional = None
        if entity.currency != currency and self.fx.has(currency, entity.currency, self.as_of):
            functional = self.fx.convert(gross, entity.currency, self.as_of)
        terms = contract.payment_terms_days
        if terms is None:
            terms = buyer.payment_terms_days
        return Invoice(
            contract=contract.id,
            entity=contract.entity,
            account=contract.account,
            bill_to=bill_to,
            currency=currency,
            issue_date=self.as_of,
            due_date=self.as_of + timedelta(days=terms) if terms is not None else None,
            lines=lines,
            net=net,
            tax=tax_total,
            gross=gross,
            reverse_charge=reverse_charge,
            legend=legend,
            customer_tax_id=buyer.tax_id,
            tax_trace=tax_trace,
            functional=functional,
            po_number=contract.po_number,
        )


def run_billing(world: BillingWorld) -> BillingRun:
    """Bill everything billable in ``world`` that earlier runs have not billed.

    The run allocates millions of short-lived objects that never form cycles,
    so the cyclic garbage collector is paused for its duration (it otherwise
    costs a fifth of the run) and restored afterwards.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _Run(world).run()
    finally:
        if collecting:
            gc.enable()
