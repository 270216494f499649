"""The billing-scenario file (DOMAIN.md part 4): load, validate, run, render.

A scenario is a closed world in YAML. Loading either yields a complete
:class:`~accord.billing.model.BillingWorld` or raises :class:`ScenarioError`
naming the record (by its id where it has one) and the field; nothing is ever
half-loaded and no partial result is produced.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from accord.billing import model as m
from accord.billing.engine import fmt, price_text, run_billing
from accord.billing.recognition import LineRevenue, recognise_run
from accord.domain.money import Money, UnknownCurrency, currency_digits
from accord.errors import ScenarioError

__all__ = ["load_scenario", "parse_scenario", "run_to_json", "simulate"]


def _to_decimal(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise ValueError("expected a decimal number as a string, not a boolean")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        # YAML turns unquoted 7.5 into a float; its shortest repr is the written text.
        result = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a decimal number") from None
    else:
        raise ValueError(f"expected a decimal number as a string, got {type(value).__name__}")
    if not result.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    return result


Dec = Annotated[Decimal, BeforeValidator(_to_decimal)]


def _non_negative(value: Decimal) -> Decimal:
    if value < 0:
        raise ValueError(f"must not be negative (got {fmt(value)})")
    return value


def _positive(value: Decimal) -> Decimal:
    if value <= 0:
        raise ValueError(f"must be greater than zero (got {fmt(value)})")
    return value


def _percent(value: Decimal) -> Decimal:
    if not 0 <= value <= 100:
        raise ValueError(f"must be a percentage from 0 to 100 (got {fmt(value)})")
    return value


def _currency(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected an ISO 4217 currency code")
    try:
        currency_digits(value)
    except UnknownCurrency:
        raise ValueError(f"unknown currency code {value!r}") from None
    return value


def _strict_date(value: Any) -> Any:
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a valid date (YYYY-MM-DD)") from None
    raise ValueError(f"expected a date (YYYY-MM-DD), got {type(value).__name__}")


NonNeg = Annotated[Dec, BeforeValidator(_to_decimal)]
Hours = Annotated[Decimal, BeforeValidator(lambda v: _non_negative(_to_decimal(v)))]
Amount = Annotated[Decimal, BeforeValidator(lambda v: _non_negative(_to_decimal(v)))]
Positive = Annotated[Decimal, BeforeValidator(lambda v: _positive(_to_decimal(v)))]
Percent = Annotated[Decimal, BeforeValidator(lambda v: _percent(_to_decimal(v)))]
Currency = Annotated[str, BeforeValidator(_currency)]
Day = Annotated[date, BeforeValidator(_strict_date)]
Country = Annotated[str, Field(min_length=2, max_length=2)]


class _Record(BaseModel):
    """Unknown keys are refused (a typo must not silently change money)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str | None = None
    description: str | None = None
    notes: str | None = None


class EntityIn(_Record):
    id: str
    country: Country
    currency: Currency
    intercompany_markup_percent: Amount | None = None


class AccountIn(_Record):
    id: str
    country: Country
    business: bool = True
    tax_id: str | None = None
    region: str | None = None
    payment_terms_days: int | None = Field(default=None, ge=0)
    legal_name: str | None = None
    domain: str | None = None


class PersonIn(_Record):
    id: str
    role: str | None = None
    entity: str | None = None
    cost_rate: Amount | None = None
    cost_currency: Currency | None = None


class RateEntryIn(_Record):
    rate: Amount
    person: str | None = None
    role: str | None = None
    project: str | None = None
    account: str | None = None
    default: bool = False
    valid_from: Day | None = None
    valid_to: Day | None = None


class RateCardIn(_Record):
    id: str
    currency: Currency
    entries: list[RateEntryIn]
    unit: Literal["hour"] = "hour"


class FxRateIn(_Record):
    from_: Currency = Field(alias="from")
    to: Currency
    date: Day
    rate: Positive
    source: str | None = None


class TaxRuleIn(_Record):
    seller_country: Country | None = None
    buyer_country: Country | None = None
    buyer_region: str | None = None
    business: bool | None = None
    category: str | None = None
    rate: Annotated[Decimal, BeforeValidator(lambda v: _non_negative(_to_decimal(v)))] | None = None
    reverse_charge: bool = False
    legend: str | None = None
    valid_from: Day | None = None
    valid_to: Day | None = None


class RoundingIn(_Record):
    increment: Positive
    mode: m.RoundingMode = m.RoundingMode.UP


class _LineIn(_Record):
    id: str
    expense_markup_percent: Amount = Decimal(0)
    tax_category: str | None = None
    revenue_method: str | None = None


class TimeAndMaterialsIn(_LineIn):
    model: Literal["time_and_materials"]
    rate_card: str
    cap: Amount | None = None
    overage: m.OverageAction = m.OverageAction.WRITE_OFF
    rounding: RoundingIn | None = None


class MilestoneDefIn(_Record):
    id: str
    percent: Percent | None = None
    amount: Amount | None = None
    acceptance_required: bool = True
    due_date: Day | None = None


class FixedMilestoneIn(_LineIn):
    model: Literal["fixed_milestone"]
    amount: Amount
    milestones: list[MilestoneDefIn]


class FixedProgressIn(_LineIn):
    model: Literal["fixed_progress"]
    amount: Amount
    estimated_cost: Positive | None = None


class ManagedServiceIn(_LineIn):
    model: Literal["managed_service"]
    fee: Amount
    included_hours: Hours
    overage_rate: Amount
    rounding: RoundingIn | None = None


class RecurringIn(_LineIn):
    model: Literal["recurring"]
    amount: Amount
    start: Day | None = None
    end: Day | None = None


class TierIn(_Record):
    unit_price: Amount
    up_to: Positive | None = None


class UsageIn(_LineIn):
    model: Literal["usage"]
    pricing: m.UsagePricing
    tiers: list[TierIn] = []
    package_size: Positive | None = None
    package_price: Amount | None = None
    free_units: Hours = Decimal(0)


class PrepaidBlockIn(_LineIn):
    model: Literal["prepaid_block"]
    hours: Positive
    rate: Amount
    overage_rate: Amount | None = None
    start: Day | None = None
    rounding: RoundingIn | None = None


LineIn = Annotated[
    TimeAndMaterialsIn
    | FixedMilestoneIn
    | FixedProgressIn
    | ManagedServiceIn
    | RecurringIn
    | UsageIn
    | PrepaidBlockIn,
    Field(discriminator="model"),
]


class ContractIn(_Record):
    id: str
    account: str
    entity: str
    currency: Currency
    lines: list[LineIn]
    bill_to: str | None = None
    tax_rounding: m.TaxRounding = m.TaxRounding.LINE
    payment_terms_days: int | None = Field(default=None, ge=0)
    po_number: str | None = None
    start: Day | None = None
    end: Day | None = None


class ProjectIn(_Record):
    id: str
    contract_line: str


TimeStatus = Literal["draft", "submitted", "approved", "rejected"]
ExpenseStatus = Literal["draft", "submitted", "approved", "rejected", "reimbursed"]


class TimeEntryIn(_Record):
    id: str
    person: str
    project: str
    date: Day
    hours: Hours
    billable: bool = True
    status: TimeStatus = "approved"
    billed: bool = False
    activity: str | None = None


class ExpenseIn(_Record):
    id: str
    person: str
    project: str
    date: Day
    amount: Amount
    currency: Currency
    billable: bool = True
    status: ExpenseStatus = "approved"
    billed: bool = False
    markup_percent: Amount | None = None
    category: str | None = None


class MilestoneEventIn(_Record):
    id: str
    status: Literal["planned", "reached", "accepted", "billed"]
    date: Day | None = None


class ProgressIn(_Record):
    contract_line: str
    date: Day
    percent_complete: Percent
    cost_to_date: Amount | None = None


class UsageRecordIn(_Record):
    contract_line: str
    date: Day
    quantity: Hours
    id: str | None = None


class PriorBilledIn(_Record):
    contract_line: str
    amount: Amount | None = None
    percent: Percent | None = None


class AdjustmentIn(_Record):
    id: str
    source: str
    kind: m.AdjustmentKind
    hours: Hours | None = None
    amount: Amount | None = None
    reason: str | None = None


class PeriodIn(_Record):
    start: Day
    end: Day


class IntercompanyIn(_Record):
    markup_percent: Amount


class ScenarioIn(_Record):
    accord_scenario: Literal[1]
    as_of: Day
    period: PeriodIn | None = None
    entities: list[EntityIn]
    accounts: list[AccountIn]
    people: list[PersonIn] = []
    rate_cards: list[RateCardIn] = []
    fx_rates: list[FxRateIn] = []
    tax_rules: list[TaxRuleIn] = []
    contracts: list[ContractIn]
    projects: list[ProjectIn] = []
    time_entries: list[TimeEntryIn] = []
    expenses: list[ExpenseIn] = []
    milestones: list[MilestoneEventIn] = []
    progress: list[ProgressIn] = []
    usage: list[UsageRecordIn] = []
    prior_billed: list[PriorBilledIn] = []
    adjustments: list[AdjustmentIn] = []
    intercompany: IntercompanyIn | None = None


# -- error naming -----------------------------------------------------------


def _record_path(raw: Any, loc: tuple[int | str, ...]) -> tuple[str, str | None]:
    """Turn a pydantic location into ``time_entries[t3]`` plus the field name."""
    parts: list[str] = []
    node = raw
    index = 0
    while index < len(loc):
        key = loc[index]
        if isinstance(key, int):
            label = str(key)
            item = node[key] if isinstance(node, list) and key < len(node) else None
            if isinstance(item, Mapping) and isinstance(item.get("id"), str | int):
                label = str(item["id"])
            elif isinstance(item, Mapping) and "contract_line" in item:
                label = f"#{key} {item['contract_line']}"
            parts[-1] = f"{parts[-1]}[{label}]" if parts else f"[{label}]"
            node = item
        else:
            nxt = node.get(key) if isinstance(node, Mapping) else None
            if index == len(loc) - 1 or not isinstance(nxt, list | Mapping):
                record = ".".join(parts) or "scenario"
                tail = ".".join(str(k) for k in loc[index:] if not isinstance(k, int))
                return record, tail
            parts.append(str(key))
            node = nxt
        index += 1
    return ".".join(parts) or "scenario", None


_TAGS = frozenset(
    {
        "time_and_materials",
        "fixed_milestone",
        "fixed_progress",
        "managed_service",
        "recurring",
        "usage",
        "prepaid_block",
    }
)


def _clean_loc(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """Drop the tag that a discriminated union puts into the location."""
    return tuple(k for k in loc if k not in _TAGS)


def _message(error: Any) -> tuple[str, bool]:
    """The message of one pydantic error, and whether it concerns ``model`` itself."""
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key (not part of the scenario format)", False
    if kind == "union_tag_invalid":
        return (
            f"unknown model {error['input'].get('model')!r}; expected one of "
            + ", ".join(sorted(_TAGS)),
            True,
        )
    if kind == "union_tag_not_found":
        return "missing 'model'", True
    return str(error["msg"]).removeprefix("Value error, "), False


def _describe(raw: Any, error: Any) -> tuple[str, str | None, str]:
    record, field = _record_path(raw, _clean_loc(error["loc"]))
    message, about_model = _message(error)
    if about_model:
        field = "model"
    return record, field, message


def _from_validation(raw: Any, exc: ValidationError) -> ScenarioError:
    """Name the first error's record and field; mention up to five more."""
    errors = exc.errors(include_url=False)
    record, field, message = _describe(raw, errors[0])
    others = []
    for error in errors[1:6]:
        rec, fld, msg = _describe(raw, error)
        others.append(f"{rec}.{fld}: {msg}" if fld else f"{rec}: {msg}")
    if others:
        message += "; also " + "; ".join(others)
    if len(errors) > 6:
        message += f"; and {len(errors) - 6} more"
    return ScenarioError(message, record=record, field=field)


# -- consistency --------------------------------------------------------------


class _Checker:
    """Cross-record checks that a schema cannot express; first error wins."""

    def __init__(self, s: ScenarioIn) -> None:
        self.s = s

    @staticmethod
    def fail(record: str, field: str, message: str) -> None:
        raise ScenarioError(message, record=record, field=field)

    def unique(self, name: str, ids: Iterable[str]) -> set[str]:
        counts = Counter(ids)
        for key, count in counts.items():
            if count > 1:
                self.fail(f"{name}[{key}]", "id", f"duplicate id {key!r}")
        return set(counts)

    def check(self) -> None:
        s = self.s
        entities = self.unique("entities", (e.id for e in s.entities))
        accounts = self.unique("accounts", (a.id for a in s.accounts))
        people = self.unique("people", (p.id for p in s.people))
        cards = self.unique("rate_cards", (c.id for c in s.rate_cards))
        self.unique("contracts", (c.id for c in s.contracts))
        lines = self.unique("contract lines", (ln.id for c in s.contracts for ln in c.lines))
        projects = self.unique("projects", (p.id for p in s.projects))
        self.unique("time_entries", (t.id for t in s.time_entries))
        self.unique("expenses", (e.id for e in s.expenses))
        self.unique("adjustments", (a.id for a in s.adjustments))
        if s.period and s.period.start > s.period.end:
            self.fail("period", "end", f"period ends ({s.period.end}) before it starts")
        for p in s.people:
            if p.entity is not None and p.entity not in entities:
                self.fail(f"people[{p.id}]", "entity", f"unknown entity {p.entity!r}")
        for card in s.rate_cards:
            for i, entry in enumerate(card.entries):
                rec = f"rate_cards[{card.id}].entries[{i}]"
                keys = (entry.person, entry.role, entry.project, entry.account)
                if not entry.default and all(k is None for k in keys):
                    self.fail(
                        rec,
                        "default",
                        "entry needs a person, role, project or account, or default: true",
                    )
                if entry.person is not None and entry.person not in people:
                    self.fail(rec, "person", f"unknown person {entry.person!r}")
                if entry.project is not None and entry.project not in projects:
                    self.fail(rec, "project", f"unknown project {entry.project!r}")
                if entry.account is not None and entry.account not in accounts:
                    self.fail(rec, "account", f"unknown account {entry.account!r}")
                if entry.valid_from and entry.valid_to and entry.valid_from > entry.valid_to:
                    self.fail(rec, "valid_to", "valid_to is before valid_from")
                self.digits(rec, "rate", entry.rate, card.currency, extra=4)
        for i, rule in enumerate(s.tax_rules):
            if rule.rate is None and not rule.reverse_charge:
                self.fail(f"tax_rules[{i}]", "rate", "a rule needs a rate or reverse_charge: true")
        line_models: dict[str, str] = {}
        for c in s.contracts:
            rec = f"contracts[{c.id}]"
            if c.account not in accounts:
                self.fail(rec, "account", f"unknown account {c.account!r}")
            if c.bill_to is not None and c.bill_to not in accounts:
                self.fail(rec, "bill_to", f"unknown account {c.bill_to!r}")
            if c.entity not in entities:
                self.fail(rec, "entity", f"unknown entity {c.entity!r}")
            for ln in c.lines:
                line_models[ln.id] = ln.model
                self.check_line(f"{rec}.lines[{ln.id}]", c, ln, cards)
        for project in s.projects:
            if project.contract_line not in lines:
                self.fail(
                    f"projects[{project.id}]",
                    "contract_line",
                    f"unknown contract line {project.contract_line!r}",
                )
        for t in s.time_entries:
            rec = f"time_entries[{t.id}]"
            if t.person not in people:
                self.fail(rec, "person", f"unknown person {t.person!r}")
            if t.project not in projects:
                self.fail(rec, "project", f"unknown project {t.project!r}")
        for e in s.expenses:
            rec = f"expenses[{e.id}]"
            if e.person not in people:
                self.fail(rec, "person", f"unknown person {e.person!r}")
            if e.project not in projects:
                self.fail(rec, "project", f"unknown project {e.project!r}")
            self.digits(rec, "amount", e.amount, e.currency)
        milestone_ids = {
            ms.id
            for c in s.contracts
            for ln in c.lines
            if isinstance(ln, FixedMilestoneIn)
            for ms in ln.milestones
        }
        self.unique("milestones", (ev.id for ev in s.milestones))
        for ev in s.milestones:
            if ev.id not in milestone_ids:
                self.fail(f"milestones[{ev.id}]", "id", f"unknown milestone {ev.id!r}")
            if ev.status in ("accepted", "reached", "billed") and ev.date is None:
                pass  # undated events count as on or before as_of
        for i, pr in enumerate(s.progress):
            self.line_ref(f"progress[{i}]", pr.contract_line, line_models, "fixed_progress")
        for i, u in enumerate(s.usage):
            self.line_ref(f"usage[{u.id or i}]", u.contract_line, line_models, "usage")
        for i, pb in enumerate(s.prior_billed):
            rec = f"prior_billed[{i}]"
            self.line_ref(rec, pb.contract_line, line_models, None)
            if pb.amount is None and pb.percent is None:
                self.fail(rec, "amount", "give the amount or the percent already billed")
        sources = {t.id for t in s.time_entries} | {e.id for e in s.expenses}
        for a in s.adjustments:
            rec = f"adjustments[{a.id}]"
            if a.source not in sources:
                self.fail(rec, "source", f"unknown time entry or expense {a.source!r}")
            if a.hours is None and a.amount is None:
                self.fail(rec, "hours", "give hours or amount")
            if a.hours is not None and a.source not in {t.id for t in s.time_entries}:
                self.fail(rec, "hours", "hours adjust time entries only")
        for i, fx in enumerate(s.fx_rates):
            if fx.from_ == fx.to:
                self.fail(f"fx_rates[{i}]", "to", "from and to are the same currency")

    def digits(self, rec: str, field: str, value: Decimal, currency: str, extra: int = 0) -> None:
        places = -int(value.normalize().as_tuple().exponent) if value else 0
        if places > currency_digits(currency) + extra:
            self.fail(
                rec,
                field,
                f"{fmt(value)} has more decimals than {currency} allows "
                f"({currency_digits(currency) + extra})",
            )

    def line_ref(self, rec: str, line: str, models: dict[str, str], want: str | None) -> None:
        if line not in models:
            self.fail(rec, "contract_line", f"unknown contract line {line!r}")
        if want is not None and models[line] != want:
            self.fail(rec, "contract_line", f"contract line {line!r} is {models[line]}, not {want}")

    def check_line(self, rec: str, c: ContractIn, ln: Any, cards: set[str]) -> None:
        if isinstance(ln, TimeAndMaterialsIn) and ln.rate_card not in cards:
            self.fail(rec, "rate_card", f"unknown rate card {ln.rate_card!r}")
        if isinstance(ln, FixedMilestoneIn):
            self.unique(f"{rec}.milestones", (ms.id for ms in ln.milestones))
            total = Decimal(0)
            for ms in ln.milestones:
                if (ms.percent is None) == (ms.amount is None):
                    self.fail(f"{rec}.milestones[{ms.id}]", "percent", "give percent or amount")
                if ms.percent is not None:
                    total += ms.percent
                elif ms.amount is not None and ln.amount:
                    total += ms.amount * 100 / ln.amount
            if total > 100:
                self.fail(rec, "milestones", f"milestones add up to {fmt(total)} % of the amount")
        if isinstance(ln, RecurringIn) and ln.start and ln.end and ln.start > ln.end:
            self.fail(rec, "end", "end is before start")
        if isinstance(ln, UsageIn):
            if ln.pricing is m.UsagePricing.PACKAGE:
                if ln.package_size is None or ln.package_price is None:
                    self.fail(
                        rec, "package_size", "package pricing needs package_size and package_price"
                    )
            else:
                if not ln.tiers:
                    self.fail(rec, "tiers", f"{ln.pricing.value} pricing needs tiers")
                bounds = [t.up_to for t in ln.tiers]
                if bounds[-1] is not None:
                    self.fail(rec, "tiers", "the last tier must have no up_to")
                closed = [b for b in bounds[:-1] if b is not None]
                if len(closed) != len(bounds) - 1 or closed != sorted(set(closed)):
                    self.fail(rec, "tiers", "up_to must rise strictly from tier to tier")
        for name in ("amount", "fee", "cap"):
            value = getattr(ln, name, None)
            if isinstance(value, Decimal):
                self.digits(rec, name, value, c.currency)


# -- building the world ---------------------------------------------------------


def _rounding(r: RoundingIn | None) -> m.Rounding | None:
    return m.Rounding(r.increment, r.mode) if r else None


def _line(ln: Any) -> m.ContractLine:
    base: dict[str, Any] = {
        "id": ln.id,
        "expense_markup_percent": ln.expense_markup_percent,
        "tax_category": ln.tax_category,
    }
    if isinstance(ln, TimeAndMaterialsIn):
        return m.TimeAndMaterialsLine(
            **base,
            rate_card=ln.rate_card,
            cap=ln.cap,
            overage=ln.overage,
            rounding=_rounding(ln.rounding),
        )
    if isinstance(ln, FixedMilestoneIn):
        return m.FixedMilestoneLine(
            **base,
            amount=ln.amount,
            milestones=tuple(
                m.MilestoneDef(ms.id, ms.percent, ms.amount, ms.acceptance_required)
                for ms in ln.milestones
            ),
        )
    if isinstance(ln, FixedProgressIn):
        return m.FixedProgressLine(**base, amount=ln.amount, estimated_cost=ln.estimated_cost)
    if isinstance(ln, ManagedServiceIn):
        return m.ManagedServiceLine(
            **base,
            fee=ln.fee,
            included_hours=ln.included_hours,
            overage_rate=ln.overage_rate,
            rounding=_rounding(ln.rounding),
        )
    if isinstance(ln, RecurringIn):
        return m.RecurringLine(**base, amount=ln.amount, start=ln.start, end=ln.end)
    if isinstance(ln, UsageIn):
        return m.UsageLine(
            **base,
            pricing=ln.pricing,
            tiers=tuple(m.Tier(t.unit_price, t.up_to) for t in ln.tiers),
            package_size=ln.package_size,
            package_price=ln.package_price,
            free_units=ln.free_units,
        )
    assert isinstance(ln, PrepaidBlockIn)
    return m.PrepaidBlockLine(
        **base,
        hours=ln.hours,
        rate=ln.rate,
        overage_rate=ln.overage_rate,
        start=ln.start,
        rounding=_rounding(ln.rounding),
    )


def _world(s: ScenarioIn) -> m.BillingWorld:
    if s.period is not None:
        start, end = s.period.start, s.period.end
    else:  # the calendar month of as_of
        start = s.as_of.replace(day=1)
        nxt = date(start.year + start.month // 12, start.month % 12 + 1, 1)
        end = date.fromordinal(nxt.toordinal() - 1)
    return m.BillingWorld(
        as_of=s.as_of,
        period_start=start,
        period_end=end,
        entities={
            e.id: m.Entity(e.id, e.country, e.currency, e.intercompany_markup_percent)
            for e in s.entities
        },
        accounts={
            a.id: m.Account(a.id, a.country, a.business, a.tax_id, a.region, a.payment_terms_days)
            for a in s.accounts
        },
        people={
            p.id: m.Person(p.id, p.role, p.entity, p.cost_rate, p.cost_currency) for p in s.people
        },
        rate_cards={
            c.id: m.RateCard(
                c.id,
                c.currency,
                tuple(
                    m.RateEntry(
                        e.rate,
                        e.person,
                        e.role,
                        e.project,
                        e.account,
                        e.default,
                        e.valid_from,
                        e.valid_to,
                    )
                    for e in c.entries
                ),
            )
            for c in s.rate_cards
        },
        contracts=tuple(
            m.Contract(
                c.id,
                c.account,
                c.entity,
                c.currency,
                tuple(_line(ln) for ln in c.lines),
                c.bill_to,
                c.tax_rounding,
                c.payment_terms_days,
                c.po_number,
            )
            for c in s.contracts
        ),
        projects={p.id: m.Project(p.id, p.contract_line) for p in s.projects},
        fx_rates=tuple(m.FxRate(f.from_, f.to, f.date, f.rate) for f in s.fx_rates),
        tax_rules=tuple(
            m.TaxRule(
                rate=r.rate if r.rate is not None else Decimal(0),
                seller_country=r.seller_country,
                buyer_country=r.buyer_country,
                buyer_region=r.buyer_region,
                business=r.business,
                category=r.category,
                reverse_charge=r.reverse_charge,
                legend=r.legend,
                valid_from=r.valid_from,
                valid_to=r.valid_to,
            )
            for r in s.tax_rules
        ),
        time_entries=tuple(
            m.TimeEntry(t.id, t.person, t.project, t.date, t.hours, t.billable, t.status, t.billed)
            for t in s.time_entries
        ),
        expenses=tuple(
            m.Expense(
                e.id,
                e.person,
                e.project,
                e.date,
                e.amount,
                e.currency,
                e.billable,
                e.status,
                e.billed,
                e.markup_percent,
                e.category,
            )
            for e in s.expenses
        ),
        milestones=tuple(m.MilestoneEvent(ev.id, ev.status, ev.date) for ev in s.milestones),
        progress=tuple(
            m.ProgressReport(p.contract_line, p.date, p.percent_complete, p.cost_to_date)
            for p in s.progress
        ),
        usage=tuple(m.UsageRecord(u.contract_line, u.date, u.quantity, u.id) for u in s.usage),
        prior_billed=tuple(
            m.PriorBilled(p.contract_line, p.amount, p.percent) for p in s.prior_billed
        ),
        adjustments=tuple(
            m.Adjustment(a.id, a.source, a.kind, a.hours, a.amount, a.reason) for a in s.adjustments
        ),
        intercompany_markup_percent=s.intercompany.markup_percent if s.intercompany else None,
    )


def parse_scenario(raw: Any) -> m.BillingWorld:
    """Validate a parsed YAML document and build the world, or raise ScenarioError."""
    if not isinstance(raw, Mapping):
        raise ScenarioError(
            "a scenario is a YAML mapping with accord_scenario: 1", record="scenario"
        )
    try:
        scenario = ScenarioIn.model_validate(raw)
    except ValidationError as exc:
        raise _from_validation(raw, exc) from None
    _Checker(scenario).check()
    return _world(scenario)


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and leaves dates as text.

    Dates stay strings so that a bad one (2026-02-30) is reported by the
    validator with its record and field, not by the YAML parser.
    """


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _mapping(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise ScenarioError(
                f"duplicate key {key!r} at line {key_node.start_mark.line + 1}", record="scenario"
            )
        seen.add(key)
    return loader.construct_mapping(node)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_scenario(path: Path) -> m.BillingWorld:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"cannot read {path}: {exc.strerror}", record=str(path)) from None
    try:
        raw = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        raise ScenarioError(
            f"not valid YAML{where}: {getattr(exc, 'problem', exc)}", record=str(path)
        ) from None
    return parse_scenario(raw)


def simulate(world: m.BillingWorld) -> m.BillingRun:
    """What a billing run on ``world.as_of`` would produce; no side effects."""
    return run_billing(world)


# -- output -----------------------------------------------------------------------


def _money(value: Money) -> str:
    return value.format()


def _line_json(line: m.InvoiceLine, currency: str) -> dict[str, Any]:

    out: dict[str, Any] = {
        "contract_line": line.contract_line,
        "kind": line.kind.value,
        "quantity": fmt(line.quantity),
        "unit_price": price_text(line.unit_price, currency),
        "amount": _money(line.amount),
        "tax": _money(line.tax),
        "tax_rate": fmt(line.tax_rate),
        "sources": list(line.sources),
        "trace": line.trace,
    }
    if line.source_amount is not None and line.source_currency != currency:
        out["source_currency"] = line.source_currency
        out["source_amount"] = _money(line.source_amount)
    return out


def _overage_json(item: m.OverageItem) -> dict[str, Any]:
    out: dict[str, Any] = {
        "source": item.source,
        "contract_line": item.contract_line,
        "amount": _money(item.amount),
        "currency": item.amount.currency,
        "reason": item.reason,
    }
    if item.hours is not None:
        out["hours"] = fmt(item.hours)
    return out


def _revenue_json(line: LineRevenue) -> dict[str, Any]:
    return {
        "contract": line.contract,
        "contract_line": line.contract_line,
        "method": line.method.value,
        "currency": line.currency,
        "period_start": line.period_start.isoformat(),
        "period_end": line.period_end.isoformat(),
        "period_revenue": _money(line.period_revenue),
        "cumulative_revenue": _money(line.cumulative_revenue),
        "billed_to_date": _money(line.billed_to_date),
        "contract_asset": _money(line.contract_asset),
        "contract_liability": _money(line.contract_liability),
        "trace": line.trace,
    }


def run_to_json(run: m.BillingRun, *, world: m.BillingWorld | None = None) -> dict[str, Any]:
    """The ``accord bill --json`` document (DOMAIN.md part 4, with extensions).

    Given the ``world`` the run was made from, the document also carries
    ``revenue``: revenue recognition and contract balances per contract line.
    """
    invoices = []
    for inv in run.invoices:
        doc: dict[str, Any] = {
            "contract": inv.contract,
            "entity": inv.entity,
            "account": inv.account,
            "bill_to": inv.bill_to,
            "currency": inv.currency,
            "issue_date": inv.issue_date.isoformat(),
            "due_date": inv.due_date.isoformat() if inv.due_date else None,
            "net": _money(inv.net),
            "tax": _money(inv.tax),
            "gross": _money(inv.gross),
            "reverse_charge": inv.reverse_charge,
            "legend": inv.legend,
            "customer_tax_id": inv.customer_tax_id,
            "tax_trace": inv.tax_trace,
            "lines": [_line_json(line, inv.currency) for line in inv.lines],
        }
        if inv.po_number:
            doc["po_number"] = inv.po_number
        if inv.functional is not None:
            doc["functional"] = {
                "currency": inv.functional.currency,
                "gross": _money(inv.functional),
            }
        invoices.append(doc)
    doc = {
        "as_of": run.as_of.isoformat(),
        "invoices": invoices,
        "held": [_overage_json(i) for i in run.held],
        "written_off": [_overage_json(i) for i in run.written_off],
        "skipped": [{"source": s.source, "reason": s.reason.value} for s in run.skipped],
        "intercompany": [
            {
                "from_entity": ic.from_entity,
                "to_entity": ic.to_entity,
                "currency": ic.currency,
                "markup_percent": fmt(ic.markup_percent),
                "amount": _money(ic.amount),
                "lines": [
                    {
                        "source": ln.source,
                        "hours": fmt(ln.hours),
                        "cost_rate": fmt(ln.cost_rate),
                        "amount": _money(ln.amount),
                        "trace": ln.trace,
                    }
                    for ln in ic.lines
                ],
            }
            for ic in run.intercompany
        ],
    }
    if world is not None:
        doc["revenue"] = [_revenue_json(line) for line in recognise_run(world, run)]
    return doc
