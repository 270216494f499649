"""A synthetic consulting firm for the billing benchmark, built in memory.

The world is made directly of :mod:`accord.billing.model` dataclasses (no YAML,
no database), so building it costs nothing the benchmark measures. Every random
choice comes from one ``random.Random(seed)``: the same sizes and seed give the
same world, entry for entry.

Shape of the firm (March 2026, run on the 31st):

* three entities: ``us`` (USD), ``uk`` (GBP), ``de`` (EUR);
* accounts in a dozen countries, mostly businesses, some consumers;
* people with roles in all three entities, most with a cost rate, so work done
  for another entity's contract produces an intercompany recharge;
* four rate cards per currency with default, role (some effective-dated),
  person, account, project, role+project and person+project entries;
* daily FX rates for three pairs (the opposite direction is used inverted);
* a tax table: domestic VAT, a reduced category rate, EU reverse charge and a
  zero-rated fallback, with one rule no longer in force;
* contracts over every line model, sized so that caps, included hours and
  prepaid blocks are exceeded on part of the lines, and ``prior_billed`` on a
  share of them;
* time entries on time-and-materials, managed-service and prepaid lines (and a
  small share on fixed-fee projects, skipped as ``fixed_fee``), a small share
  not approved, non-billable, already billed, after ``as_of`` or outside the
  period; expenses in three currencies; milestone events, progress reports,
  usage records and a few write-downs and write-ups.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_DOWN, Decimal
from itertools import accumulate

from accord.billing.model import (
    Account,
    Adjustment,
    AdjustmentKind,
    BillingWorld,
    Contract,
    ContractLine,
    Entity,
    Expense,
    FixedMilestoneLine,
    FixedProgressLine,
    FxRate,
    ManagedServiceLine,
    MilestoneDef,
    MilestoneEvent,
    OverageAction,
    Person,
    PrepaidBlockLine,
    PriorBilled,
    ProgressReport,
    Project,
    RateCard,
    RateEntry,
    RecurringLine,
    Rounding,
    RoundingMode,
    TaxRounding,
    TaxRule,
    Tier,
    TimeAndMaterialsLine,
    TimeEntry,
    UsageLine,
    UsagePricing,
    UsageRecord,
)

__all__ = ["LINE_MIX", "Sizes", "generate_world", "line_model"]

AS_OF = date(2026, 3, 31)
PERIOD_START = date(2026, 3, 1)
PERIOD_END = date(2026, 3, 31)

CURRENCIES = ("USD", "GBP", "EUR")
_USD_PER_UNIT = {"USD": 1.0, "GBP": 1.27, "EUR": 1.09}
"""Rough value of one unit in USD, used only to size caps and blocks."""

ENTITIES = {
    "us": Entity("us", "US", "USD", Decimal(10)),
    "uk": Entity("uk", "GB", "GBP", Decimal(8)),
    "de": Entity("de", "DE", "EUR"),  # falls back to the world's default markup
}
_ENTITY_OF_COUNTRY = {"US": "us", "CA": "us", "AU": "us", "GB": "uk", "IE": "uk"}

_COUNTRIES = (
    ("US", 33),
    ("GB", 18),
    ("DE", 14),
    ("FR", 7),
    ("NL", 5),
    ("IE", 3),
    ("ES", 3),
    ("IT", 3),
    ("SE", 2),
    ("CA", 5),
    ("CH", 4),
    ("AU", 3),
)
_EUROPE = frozenset("GB DE FR NL IE ES IT SE CH".split())

# role → (bill rate in USD on the standard card, cost rate in USD)
_ROLES = {
    "partner": (450, 190),
    "principal": (360, 150),
    "manager": (280, 115),
    "senior": (220, 90),
    "consultant": (180, 70),
    "analyst": (130, 48),
    "engineer": (200, 82),
    "designer": (170, 66),
}
_ROLE_WEIGHTS = (2, 4, 10, 20, 28, 18, 12, 6)

_CARDS = (("std", 1.0), ("premium", 1.25), ("public", 0.85), ("nearshore", 0.7))

LINE_MIX: tuple[tuple[str, int], ...] = (
    ("tm", 22),
    ("tm_round", 8),
    ("tm_cap_write_off", 8),
    ("tm_cap_hold", 6),
    ("tm_cap_round", 4),
    ("managed_service", 10),
    ("prepaid_block", 7),
    ("fixed_milestone", 10),
    ("fixed_progress", 7),
    ("recurring", 10),
    ("usage_graduated", 3),
    ("usage_volume", 3),
    ("usage_package", 2),
)
"""Line models and their relative share of contract lines."""

_TIME_KINDS = frozenset(
    {"tm", "tm_round", "tm_cap_write_off", "tm_cap_hold", "tm_cap_round"}
    | {"managed_service", "prepaid_block"}
)
_FIXED_TIME_SHARE = 0.02
"""Share of time entries logged on fixed-fee projects (a cost, never billed by the hour)."""

_ROUNDINGS = (
    Rounding(Decimal("0.1"), RoundingMode.UP),
    Rounding(Decimal("0.25"), RoundingMode.NEAREST),
    Rounding(Decimal("0.5"), RoundingMode.UP),
    Rounding(Decimal("0.1"), RoundingMode.DOWN),
)

_CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Sizes:
    """How big a world to build; accounts and people stay fixed by default."""

    time_entries: int = 1_000_000
    expenses: int = 50_000
    contracts: int = 10_000
    accounts: int = 2_000
    people: int = 500


def line_model(line: ContractLine) -> str:
    """Short name of a line's model, for reporting the mix of a world."""
    if isinstance(line, TimeAndMaterialsLine):
        name = "time_and_materials"
        if line.cap is not None:
            name += "+cap"
        if line.rounding is not None:
            name += "+rounding"
        return name
    if isinstance(line, UsageLine):
        return f"usage_{line.pricing.value}"
    return {
        FixedMilestoneLine: "fixed_milestone",
        FixedProgressLine: "fixed_progress",
        ManagedServiceLine: "managed_service",
        RecurringLine: "recurring",
        PrepaidBlockLine: "prepaid_block",
    }[type(line)]


# -- plans: what the world will hold, before it is frozen -------------------


@dataclass(slots=True)
class _ProjectPlan:
    id: str
    line: _LinePlan
    team: tuple[str, ...]
    weight: float
    dates: tuple[date, ...] = ()
    """Days its time may be dated on (per kind; filled in when sources are made)."""


@dataclass(slots=True)
class _LinePlan:
    id: str
    kind: str
    contract: str
    entity: str
    currency: str
    account: str
    projects: list[_ProjectPlan] = field(default_factory=list)
    rate_card: str = ""
    start: date | None = None

    @property
    def weight(self) -> float:
        return sum(p.weight for p in self.projects)


def _money(rng: random.Random, low: float, high: float, step: int = 1) -> Decimal:
    """A random whole amount between ``low`` and ``high``, a multiple of ``step``."""
    return Decimal(int(rng.uniform(low, high) / step) * step)


def _weekdays(start: date, end: date) -> tuple[date, ...]:
    days = []
    day = start
    while day <= end:
        if day.weekday() < 5:
            days.append(day)
        day += timedelta(days=1)
    return tuple(days)


class _Builder:
    def __init__(self, sizes: Sizes, seed: int) -> None:
        self.sizes = sizes
        self.rng = random.Random(seed)
        self.people: dict[str, Person] = {}
        self.people_by_entity: dict[str, list[str]] = {e: [] for e in ENTITIES}
        self.accounts: dict[str, Account] = {}
        self.card_entries: dict[str, list[RateEntry]] = {}
        self.card_currency: dict[str, str] = {}
        self.card_factor: dict[str, float] = {}
        self.lines: list[_LinePlan] = []
        self.projects: list[_ProjectPlan] = []
        self.prior: list[PriorBilled] = []
        self.milestone_events: list[MilestoneEvent] = []
        self.progress: list[ProgressReport] = []
        self.usage: list[UsageRecord] = []
        # Hours pool: mostly quarter hours, some to the minute (two decimals), 0.25-8 h.
        rng = self.rng
        pool = []
        for _ in range(4096):
            if rng.random() < 0.7:
                cents = 25 * min(32, 1 + int(rng.expovariate(1 / 7)))
            else:
                cents = min(800, 25 + int(rng.expovariate(1 / 180)))
            pool.append(Decimal(cents).scaleb(-2))
        self.hours_pool = tuple(pool)
        self.mean_hours = sum(float(h) for h in pool) / len(pool)
        amounts = []
        for _ in range(4096):
            cents = 500 + int(rng.expovariate(1 / 18_000))
            amounts.append(Decimal(min(cents, 500_000)).scaleb(-2))
        self.expense_pool = tuple(amounts)

    # -- reference data ---------------------------------------------------

    def build_people(self) -> None:
        rng = self.rng
        roles = list(_ROLES)
        entities = list(ENTITIES)
        for i in range(self.sizes.people):
            pid = f"person-{i:04d}"
            role: str | None = rng.choices(roles, _ROLE_WEIGHTS)[0]
            entity = rng.choices(entities, (50, 30, 20))[0]
            cost_rate = None
            cost_currency = None
            if rng.random() < 0.6 and role is not None:
                currency = ENTITIES[entity].currency
                usd = _ROLES[role][1] * rng.uniform(0.85, 1.15)
                cost_rate = Decimal(round(usd / _USD_PER_UNIT[currency], 2)).quantize(_CENT)
                if rng.random() < 0.2:
                    cost_currency = currency
            if rng.random() < 0.02:
                role = None  # priced by person, project or default entries only
            self.people[pid] = Person(pid, role, entity, cost_rate, cost_currency)
            self.people_by_entity[entity].append(pid)

    def build_accounts(self) -> None:
        rng = self.rng
        countries = [c for c, _ in _COUNTRIES]
        weights = [w for _, w in _COUNTRIES]
        for i in range(self.sizes.accounts):
            aid = f"acct-{i:05d}"
            country = rng.choices(countries, weights)[0]
            business = rng.random() < 0.92
            tax_id = None
            if business and country in _EUROPE:
                tax_id = f"{country}{rng.randrange(10**8, 10**9)}"
            elif business and country == "US":
                tax_id = f"{rng.randrange(10, 99)}-{rng.randrange(10**6, 10**7)}"
            terms = rng.choice((14, 30, 45, 60)) if rng.random() < 0.4 else None
            self.accounts[aid] = Account(aid, country, business, tax_id, None, terms)

    def build_card_shells(self) -> None:
        """Default, role, person and account entries; project entries come with projects."""
        rng = self.rng
        day = date(2026, 2, 1)
        people = list(self.people)
        accounts = list(self.accounts)
        for currency in CURRENCIES:
            for name, multiplier in _CARDS:
                cid = f"rc-{currency.lower()}-{name}"
                factor = multiplier / _USD_PER_UNIT[currency]
                self.card_currency[cid] = currency
                self.card_factor[cid] = factor
                entries = [RateEntry(self._rate(190 * factor), default=True)]
                for index, (role, (usd, _)) in enumerate(_ROLES.items()):
                    rate = self._rate(usd * factor)
                    if index % 2:
                        old = self._rate(usd * factor * 0.95)
                        entries.append(RateEntry(old, role=role, valid_to=day - timedelta(days=1)))
                        entries.append(RateEntry(rate, role=role, valid_from=day))
                    else:
                        entries.append(RateEntry(rate, role=role))
                    if index == 3:  # a price rise announced for next quarter
                        later = self._rate(usd * factor * 1.05)
                        entries.append(RateEntry(later, role=role, valid_from=date(2026, 4, 1)))
                for pid in rng.sample(people, min(25, len(people))):
                    role = self.people[pid].role
                    usd = _ROLES[role][0] if role else 200
                    entries.append(RateEntry(self._rate(usd * factor * 1.1), person=pid))
                for aid in rng.sample(accounts, min(10, len(accounts))):
                    entries.append(RateEntry(self._rate(170 * factor), account=aid))
                self.card_entries[cid] = entries

    def _rate(self, value: float) -> Decimal:
        """A bill rate rounded to a whole 5 (or to the cent for small values)."""
        if value >= 50:
            return Decimal(int(round(value / 5)) * 5)
        return Decimal(round(value, 2)).quantize(_CENT)

    # -- contracts ---------------------------------------------------------

    def plan_contracts(self) -> None:
        rng = self.rng
        kinds = [k for k, _ in LINE_MIX]
        kind_weights = list(accumulate(w for _, w in LINE_MIX))
        accounts = list(self.accounts)
        entities = list(ENTITIES)
        width = max(5, len(str(self.sizes.contracts)))
        for c in range(self.sizes.contracts):
            cid = f"c{c:0{width}d}"
            account = self.accounts[rng.choice(accounts)]
            entity = _ENTITY_OF_COUNTRY.get(account.country, "de")
            if rng.random() < 0.12:
                entity = rng.choice(entities)
            currency = ENTITIES[entity].currency
            if rng.random() < 0.2:
                currency = rng.choice(CURRENCIES)
            n_lines = rng.choices((1, 2, 3), cum_weights=(60, 90, 100))[0]
            for k in range(n_lines):
                kind = rng.choices(kinds, cum_weights=kind_weights)[0]
                line = _LinePlan(f"{cid}-l{k + 1}", kind, cid, entity, currency, account.id)
                self.lines.append(line)
                if kind in _TIME_KINDS:
                    n_projects = 2 if kind.startswith("tm") and rng.random() < 0.15 else 1
                    for _ in range(n_projects):
                        self._plan_project(line, rng.lognormvariate(0, 0.9))
                elif kind.startswith("fixed"):
                    self._plan_project(line, 0.0)  # weight set once the total is known
        # Time on fixed-fee projects: a fixed share of all entries.
        billed_weight = sum(p.weight for p in self.projects)
        fixed = [p for p in self.projects if p.weight == 0.0]
        if fixed:
            each = billed_weight * _FIXED_TIME_SHARE / (1 - _FIXED_TIME_SHARE) / len(fixed)
            each = each or 1.0  # a tiny world with fixed-fee projects only
            for project in fixed:
                project.weight = each

    def _plan_project(self, line: _LinePlan, weight: float) -> None:
        rng = self.rng
        pid = f"prj-{len(self.projects):06d}"
        own = self.people_by_entity[line.entity] or list(self.people)
        everyone = list(self.people)
        team = {
            rng.choice(own) if rng.random() < 0.85 else rng.choice(everyone)
            for _ in range(rng.randint(2, 10))
        }
        project = _ProjectPlan(pid, line, tuple(sorted(team)), weight)
        line.projects.append(project)
        self.projects.append(project)

    def build_contracts(self) -> tuple[tuple[Contract, ...], dict[str, Project]]:
        rng = self.rng
        total_weight = sum(p.weight for p in self.projects) or 1.0
        hours_per_weight = self.sizes.time_entries * self.mean_hours / total_weight
        by_contract: dict[str, list[ContractLine]] = {}
        facts: dict[str, _LinePlan] = {}
        for plan in self.lines:
            expected_hours = plan.weight * hours_per_weight
            line = self._line(plan, expected_hours)
            by_contract.setdefault(plan.contract, []).append(line)
            facts[plan.contract] = plan
        contracts = []
        accounts = list(self.accounts)
        for cid, lines in by_contract.items():
            plan = facts[cid]
            bill_to = rng.choice(accounts) if rng.random() < 0.05 else None
            contracts.append(
                Contract(
                    cid,
                    plan.account,
                    plan.entity,
                    plan.currency,
                    tuple(lines),
                    bill_to=bill_to,
                    tax_rounding=TaxRounding.INVOICE if rng.random() < 0.3 else TaxRounding.LINE,
                    payment_terms_days=rng.choice((30, 45)) if rng.random() < 0.5 else None,
                    po_number=f"PO-{rng.randrange(10**5, 10**6)}" if rng.random() < 0.3 else None,
                )
            )
        projects = {p.id: Project(p.id, p.line.id) for p in self.projects}
        return tuple(contracts), projects

    def _line(self, plan: _LinePlan, expected_hours: float) -> ContractLine:
        rng = self.rng
        kind = plan.kind
        currency = plan.currency
        markup = Decimal(rng.choice((0, 0, 0, 5, 10, 15)))
        category = "training" if rng.random() < 0.03 else None
        unit = _USD_PER_UNIT[currency]
        if kind.startswith("tm"):
            return self._time_and_materials(plan, expected_hours, markup, category)
        if kind == "managed_service":
            included = Decimal(max(5, int(expected_hours * rng.uniform(0.6, 1.5))))
            rate = self._rate(rng.uniform(140, 260) / unit)
            fee = Decimal(int(included * rate * Decimal("0.9") / 100) * 100)
            roll = rng.random()
            if roll < 0.6:  # this month's fee was invoiced in advance
                self.prior.append(PriorBilled(plan.id, amount=fee))
            elif roll < 0.7:  # fee and part of the overage already invoiced
                self.prior.append(PriorBilled(plan.id, amount=fee + _money(rng, 100, 2000)))
            rounding = rng.choice(_ROUNDINGS) if rng.random() < 0.4 else None
            return ManagedServiceLine(plan.id, markup, category, fee, included, rate, rounding)
        if kind == "prepaid_block":
            early = rng.random() < 0.5
            plan.start = (
                rng.choice((date(2026, 1, 1), date(2026, 2, 1)))
                if early
                else rng.choice((None, PERIOD_START, date(2026, 3, 9), date(2026, 3, 16)))
            )
            hours = Decimal(max(10, int(expected_hours * rng.uniform(0.6, 1.6) / 10) * 10))
            rate = self._rate(rng.uniform(140, 260) / unit)
            overage = None if rng.random() < 0.5 else self._rate(float(rate) * 1.1)
            if early:  # the block was invoiced up front when it started
                self.prior.append(PriorBilled(plan.id, amount=hours * rate))
            rounding = rng.choice(_ROUNDINGS) if rng.random() < 0.3 else None
            return PrepaidBlockLine(
                plan.id, markup, category, hours, rate, overage, plan.start, rounding
            )
        if kind == "fixed_milestone":
            return self._fixed_milestone(plan, markup, category)
        if kind == "fixed_progress":
            return self._fixed_progress(plan, markup, category)
        if kind == "recurring":
            return self._recurring(plan, markup, category)
        return self._usage_line(plan, markup, category)

    def _time_and_materials(
        self, plan: _LinePlan, expected_hours: float, markup: Decimal, category: str | None
    ) -> TimeAndMaterialsLine:
        rng = self.rng
        kind = plan.kind
        currency = plan.currency
        if rng.random() < 0.2:
            currency = rng.choice(CURRENCIES)
        name = rng.choices(_CARDS, (55, 15, 15, 15))[0][0]
        card = f"rc-{currency.lower()}-{name}"
        plan.rate_card = card
        self._project_rates(plan, card)
        rounding = rng.choice(_ROUNDINGS) if kind in ("tm_round", "tm_cap_round") else None
        cap = None
        overage = OverageAction.WRITE_OFF
        if "cap" in kind:
            if kind == "tm_cap_hold":
                overage = OverageAction.HOLD
            # Expected value of this run in the contract currency, roughly.
            value = expected_hours * 200 * self.card_factor[card]
            value *= _USD_PER_UNIT[self.card_currency[card]] / _USD_PER_UNIT[plan.currency]
            prior = _money(rng, 1_000, 60_000, 100) if rng.random() < 0.5 else Decimal(0)
            budget = Decimal(max(1_000, int(value * rng.uniform(0.5, 1.5) / 100) * 100))
            cap = prior + budget
            if prior:
                self.prior.append(PriorBilled(plan.id, amount=prior))
        return TimeAndMaterialsLine(plan.id, markup, category, card, cap, overage, rounding)

    def _project_rates(self, plan: _LinePlan, card: str) -> None:
        """Project-specific entries: person+project, role+project and project rates."""
        rng = self.rng
        factor = self.card_factor[card]
        entries = self.card_entries[card]
        for project in plan.projects:
            roll = rng.random()
            if roll < 0.25:
                for pid in rng.sample(project.team, min(len(project.team), rng.randint(1, 2))):
                    role = self.people[pid].role
                    usd = _ROLES[role][0] if role else 200
                    valid_from = date(2026, 3, 16) if rng.random() < 0.2 else None
                    rate = self._rate(usd * factor * 1.08)
                    entries.append(
                        RateEntry(rate, person=pid, project=project.id, valid_from=valid_from)
                    )
            elif roll < 0.35:
                role = rng.choice(list(_ROLES))
                rate = self._rate(_ROLES[role][0] * factor * 0.95)
                entries.append(RateEntry(rate, role=role, project=project.id))
            elif roll < 0.4:
                entries.append(RateEntry(self._rate(210 * factor), project=project.id))

    def _fixed_milestone(
        self, plan: _LinePlan, markup: Decimal, category: str | None
    ) -> FixedMilestoneLine:
        rng = self.rng
        amount = _money(rng, 20_000, 500_000, 1_000)
        count = rng.randint(2, 5)
        by_amount = rng.random() < 0.1
        cuts = sorted(rng.sample(range(1, 20), count - 1))
        percents = [Decimal(5 * (b - a)) for a, b in zip([0, *cuts], [*cuts, 20], strict=True)]
        current = rng.randrange(count)  # earlier milestones billed, this one in play
        defs = []
        for index, percent in enumerate(percents):
            mid = f"{plan.id}-m{index + 1}"
            required = rng.random() < 0.8
            if by_amount:
                defs.append(MilestoneDef(mid, amount=amount * percent / 100))
            else:
                defs.append(MilestoneDef(mid, percent=percent, acceptance_required=required))
            event: MilestoneEvent | None = None
            if index < current:
                event = MilestoneEvent(mid, "billed", date(2026, 1, 1) + timedelta(days=15 * index))
            elif index == current:
                status = rng.choices(("accepted", "reached", "planned"), (60, 30, 10))[0]
                day = PERIOD_START + timedelta(days=rng.randrange(31))
                if rng.random() < 0.05:
                    day = AS_OF + timedelta(days=rng.randint(1, 10))
                event = MilestoneEvent(mid, status, day)
            elif rng.random() < 0.3:
                event = MilestoneEvent(mid, "planned", None)
            if event is not None:
                self.milestone_events.append(event)
        return FixedMilestoneLine(plan.id, markup, category, amount, tuple(defs))

    def _fixed_progress(
        self, plan: _LinePlan, markup: Decimal, category: str | None
    ) -> FixedProgressLine:
        rng = self.rng
        amount = _money(rng, 20_000, 400_000, 1_000)
        percent = 0
        billed = 0
        for month in (1, 2, 3):
            if rng.random() < 0.3:
                continue
            percent = min(100, percent + rng.randint(5, 35))
            day = date(2026, month, 28 if month == 2 else 31)
            if month == 3 and rng.random() < 0.1:
                day = AS_OF + timedelta(days=rng.randint(1, 5))
            self.progress.append(ProgressReport(plan.id, day, Decimal(percent)))
            if month < 3:
                billed = percent
        if billed:
            self.prior.append(PriorBilled(plan.id, percent=Decimal(billed)))
        return FixedProgressLine(plan.id, markup, category, amount)

    def _recurring(self, plan: _LinePlan, markup: Decimal, category: str | None) -> RecurringLine:
        rng = self.rng
        amount = _money(rng, 500, 20_000, 50)
        start: date | None = None
        end: date | None = None
        roll = rng.random()
        if roll < 0.4:
            start = date(2025, rng.randint(1, 12), 1)
        elif roll < 0.6:
            start = PERIOD_START + timedelta(days=rng.randint(1, 27))
        elif roll < 0.7:
            start = date(2025, 6, 1)
            end = PERIOD_START + timedelta(days=rng.randint(0, 29))
        elif roll < 0.8:
            start = date(2025, 1, 1)
            end = date(2026, 2, 28)  # ended: nothing to bill
        roll = rng.random()
        if roll < 0.15:
            self.prior.append(PriorBilled(plan.id, amount=amount))
        elif roll < 0.2:
            self.prior.append(PriorBilled(plan.id, amount=(amount / 3).quantize(_CENT)))
        return RecurringLine(plan.id, markup, category, amount, start, end)

    def _usage_line(self, plan: _LinePlan, markup: Decimal, category: str | None) -> UsageLine:
        rng = self.rng
        scale = 1 / _USD_PER_UNIT[plan.currency]
        if plan.kind == "usage_package":
            size = Decimal(rng.choice((100, 500, 1000)))
            price = Decimal(round(rng.uniform(25, 500) * scale, 2)).quantize(_CENT)
            free = Decimal(rng.choice((0, 20, 100)))
            line = UsageLine(
                plan.id,
                markup,
                category,
                UsagePricing.PACKAGE,
                package_size=size,
                package_price=price,
                free_units=free,
            )
        else:
            base = rng.uniform(0.05, 2.0) * scale
            tiers = (
                Tier(Decimal(round(base, 4)).quantize(Decimal("0.0001")), Decimal(1_000)),
                Tier(Decimal(round(base * 0.8, 4)).quantize(Decimal("0.0001")), Decimal(10_000)),
                Tier(Decimal(round(base * 0.6, 4)).quantize(Decimal("0.0001"))),
            )
            pricing = UsagePricing.GRADUATED
            if plan.kind == "usage_volume":
                pricing = UsagePricing.VOLUME
            line = UsageLine(plan.id, markup, category, pricing, tiers)
        for n in range(rng.randint(1, 8)):
            day = PERIOD_START + timedelta(days=rng.randrange(31))
            if rng.random() < 0.1:
                day = date(2026, 2, rng.randint(1, 28))  # last period's usage
            quantity = Decimal(rng.randint(1, 5_000))
            if rng.random() < 0.2:
                quantity = Decimal(round(rng.uniform(0.5, 500), 3)).quantize(Decimal("0.001"))
            rid = f"{plan.id}-u{n + 1}" if rng.random() < 0.8 else None
            self.usage.append(UsageRecord(plan.id, day, quantity, rid))
        if rng.random() < 0.1:
            self.prior.append(PriorBilled(plan.id, amount=_money(rng, 10, 500)))
        return line

    # -- sources -----------------------------------------------------------

    def build_time_entries(self) -> tuple[TimeEntry, ...]:
        """Time on every project, spread by project weight; returns entries in id order."""
        rng = self.rng
        random_ = rng.random
        bits = rng.getrandbits
        hours_pool = self.hours_pool
        march = _weekdays(PERIOD_START, PERIOD_END)
        feb = _weekdays(date(2026, 2, 1), date(2026, 2, 28))
        after = _weekdays(AS_OF + timedelta(days=1), AS_OF + timedelta(days=7))
        # Per project: (id, team, kind code, days before the period for prepaid blocks)
        # kind codes: 0 T&M, 1 managed service, 2 prepaid, 3 fixed fee
        specs = []
        for project in self.projects:
            kind = project.line.kind
            code = 0 if kind.startswith("tm") else 1 if kind == "managed_service" else 2
            if kind.startswith("fixed"):
                code = 3
            early: tuple[date, ...] = ()
            this_month = march
            start = project.line.start
            if code == 2 and start is not None:
                if start < PERIOD_START:
                    early = _weekdays(start, date(2026, 2, 28))
                else:
                    this_month = tuple(d for d in march if d >= start) or march
            specs.append((project.id, project.team, code, early, this_month))
        cum = list(accumulate(p.weight for p in self.projects))
        n = self.sizes.time_entries
        if not n or not specs:
            return ()
        width = max(7, len(str(n)))
        chosen = rng.choices(range(len(specs)), cum_weights=cum, k=n)
        entries = []
        append = entries.append
        for i, index in enumerate(chosen):
            pid, team, code, early, this_month = specs[index]
            person = team[int(random_() * len(team))]
            hours = hours_pool[bits(12)]
            u = random_()
            billed = False
            if code == 0:  # T&M: some late February time, some of it billed last month
                if u < 0.003:
                    day = after[int(u * 1e6) % len(after)]
                elif u < 0.053:
                    day = feb[int(u * 1e6) % len(feb)]
                    billed = u < 0.028
                else:
                    day = this_month[int(u * 1e6) % len(this_month)]
                    billed = u > 0.995
            elif code == 1:  # managed service: hours of the period count
                if u < 0.003:
                    day = after[int(u * 1e6) % len(after)]
                elif u < 0.08:
                    day = feb[int(u * 1e6) % len(feb)]
                    billed = u < 0.07  # billed last month; the rest is outside the period
                else:
                    day = this_month[int(u * 1e6) % len(this_month)]
            elif code == 2 and early and u < 0.4:  # prepaid block drawn down before
                day = early[int(u * 1e6) % len(early)]
                billed = True
            else:
                day = this_month[int(u * 1e6) % len(this_month)]
            v = random_()
            status = "approved"
            billable = True
            if v < 0.01:
                status = "submitted"
            elif v < 0.013:
                status = "rejected"
            elif v < 0.043:
                billable = False
            append(TimeEntry(f"t{i:0{width}d}", person, pid, day, hours, billable, status, billed))
        return tuple(entries)

    def build_expenses(self) -> tuple[Expense, ...]:
        rng = self.rng
        random_ = rng.random
        bits = rng.getrandbits
        pool = self.expense_pool
        march = _weekdays(PERIOD_START, PERIOD_END)
        after = _weekdays(AS_OF + timedelta(days=1), AS_OF + timedelta(days=7))
        categories = ("travel", "lodging", "meals", "software", "mileage", None)
        markups = (Decimal(0), Decimal(20), Decimal("7.5"))
        specs = [(p.id, p.team, p.line.currency) for p in self.projects]
        cum = list(accumulate(p.weight for p in self.projects))
        n = self.sizes.expenses
        if not n or not specs:
            return ()
        width = max(6, len(str(n)))
        chosen = rng.choices(range(len(specs)), cum_weights=cum, k=n)
        expenses = []
        for i, index in enumerate(chosen):
            pid, team, currency = specs[index]
            person = team[int(random_() * len(team))]
            u = random_()
            if u < 0.3:
                currency = CURRENCIES[int(u * 10) % 3]
            day = (
                after[int(u * 1e6) % len(after)] if u < 0.005 else march[int(u * 1e6) % len(march)]
            )
            v = random_()
            status = "approved" if v < 0.8 else "reimbursed" if v < 0.95 else "submitted"
            w = random_()
            billable = w >= 0.12
            billed = w > 0.98
            markup = markups[int(w * 1e4) % 3] if 0.5 < w < 0.55 else None
            expenses.append(
                Expense(
                    f"e{i:0{width}d}",
                    person,
                    pid,
                    day,
                    pool[bits(12)],
                    currency,
                    billable,
                    status,
                    billed,
                    markup,
                    categories[int(w * 1e3) % len(categories)],
                )
            )
        return tuple(expenses)

    def build_adjustments(
        self, entries: tuple[TimeEntry, ...], expenses: tuple[Expense, ...]
    ) -> tuple[Adjustment, ...]:
        """A few write-downs (hours, never below the rounded entry) and write-ups."""
        rng = self.rng
        result = []
        for entry in rng.sample(entries, min(len(entries), len(entries) // 2000)):
            if rng.random() < 0.75:
                hours = (entry.hours * Decimal("0.4")).quantize(_CENT, rounding=ROUND_DOWN)
                result.append(
                    Adjustment(
                        f"adj-{len(result)}",
                        entry.id,
                        AdjustmentKind.WRITE_DOWN,
                        hours=hours,
                        reason="inefficiency",
                    )
                )
            else:
                amount = _money(rng, 10, 200)
                result.append(
                    Adjustment(
                        f"adj-{len(result)}",
                        entry.id,
                        AdjustmentKind.WRITE_UP,
                        amount=amount,
                        reason="expedite",
                    )
                )
        for expense in rng.sample(expenses, min(len(expenses), len(expenses) // 200)):
            amount = (expense.amount / 2).quantize(_CENT, rounding=ROUND_DOWN)
            result.append(
                Adjustment(
                    f"adj-{len(result)}",
                    expense.id,
                    AdjustmentKind.WRITE_DOWN,
                    amount=amount,
                    reason="policy",
                )
            )
        return tuple(result)

    def build_fx(self) -> tuple[FxRate, ...]:
        """Daily rates for three pairs from 1 January to a few days after ``as_of``."""
        rng = self.rng
        rates = []
        places = Decimal("0.000001")
        for source, target, base in (
            ("USD", "GBP", 0.79),
            ("USD", "EUR", 0.92),
            ("EUR", "GBP", 0.86),
        ):
            value = base
            day = date(2026, 1, 1)
            while day <= AS_OF + timedelta(days=3):
                value *= 1 + rng.gauss(0, 0.003)
                rates.append(FxRate(source, target, day, Decimal(round(value, 6)).quantize(places)))
                day += timedelta(days=1)
        return tuple(rates)


def tax_table() -> tuple[TaxRule, ...]:
    """Domestic VAT, a reduced category rate, EU reverse charge, then zero."""
    reverse = "Reverse charge: VAT to be accounted for by the recipient."
    return (
        TaxRule(
            Decimal("0.16"),
            seller_country="DE",
            buyer_country="DE",
            valid_from=date(2020, 7, 1),
            valid_to=date(2020, 12, 31),
        ),
        TaxRule(Decimal("0.07"), seller_country="DE", buyer_country="DE", category="training"),
        TaxRule(Decimal("0.19"), seller_country="DE", buyer_country="DE"),
        TaxRule(Decimal("0.20"), seller_country="GB", buyer_country="GB"),
        TaxRule(
            seller_country="DE",
            buyer_region="EU",
            business=True,
            reverse_charge=True,
            legend="Steuerschuldnerschaft des Leistungsempfängers / reverse charge",
        ),
        TaxRule(Decimal("0.19"), seller_country="DE", buyer_region="EU", business=False),
        TaxRule(
            seller_country="GB",
            buyer_region="EU",
            business=True,
            reverse_charge=True,
            legend=reverse,
        ),
        TaxRule(Decimal(0), legend=None),
    )


def generate_world(sizes: Sizes | None = None, seed: int = 2026) -> BillingWorld:
    """Build a deterministic world of the given sizes."""
    builder = _Builder(sizes or Sizes(), seed)
    builder.build_people()
    builder.build_accounts()
    builder.build_card_shells()
    builder.plan_contracts()
    contracts, projects = builder.build_contracts()
    rate_cards = {
        cid: RateCard(cid, builder.card_currency[cid], tuple(entries))
        for cid, entries in builder.card_entries.items()
    }
    time_entries = builder.build_time_entries()
    expenses = builder.build_expenses()
    return BillingWorld(
        as_of=AS_OF,
        period_start=PERIOD_START,
        period_end=PERIOD_END,
        entities=dict(ENTITIES),
        accounts=builder.accounts,
        people=builder.people,
        rate_cards=rate_cards,
        contracts=contracts,
        projects=projects,
        fx_rates=builder.build_fx(),
        tax_rules=tax_table(),
        time_entries=time_entries,
        expenses=expenses,
        milestones=tuple(builder.milestone_events),
        progress=tuple(builder.progress),
        usage=tuple(builder.usage),
        prior_billed=tuple(builder.prior),
        adjustments=builder.build_adjustments(time_entries, expenses),
        intercompany_markup_percent=Decimal(12),
    )
