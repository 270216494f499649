"""The billing engine's view of canonical data: what a billing run reads and writes.

These are plain frozen values. The engine never sees a database row, an HTTP
payload or a YAML node; the hub (or a scenario file) builds a :class:`BillingWorld`
and the engine returns a :class:`BillingRun`. That is what lets a run be
simulated, tested to the cent and replayed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from enum import StrEnum

from accord.domain.money import Money

__all__ = [
    "Account",
    "Adjustment",
    "AdjustmentKind",
    "BillingRun",
    "BillingWorld",
    "Contract",
    "ContractLine",
    "Entity",
    "Expense",
    "FixedMilestoneLine",
    "FixedProgressLine",
    "FxRate",
    "Intercompany",
    "IntercompanyLine",
    "Invoice",
    "InvoiceLine",
    "LineKind",
    "ManagedServiceLine",
    "MilestoneDef",
    "MilestoneEvent",
    "OverageAction",
    "OverageItem",
    "Person",
    "PrepaidBlockLine",
    "PriorBilled",
    "ProgressReport",
    "Project",
    "RateCard",
    "RateEntry",
    "RecurringLine",
    "Rounding",
    "RoundingMode",
    "SkipReason",
    "Skipped",
    "TaxRounding",
    "TaxRule",
    "Tier",
    "TimeAndMaterialsLine",
    "TimeEntry",
    "UsageLine",
    "UsagePricing",
    "UsageRecord",
]


# -- policies -------------------------------------------------------------


class RoundingMode(StrEnum):
    """How a quantity is brought to its rounding increment."""

    UP = "up"
    """Always to the next increment (7.533 h → 7.6 h at 0.1)."""
    DOWN = "down"
    """Always to the previous increment."""
    NEAREST = "nearest"
    """To the nearest increment, a tie going up."""


@dataclass(frozen=True, slots=True)
class Rounding:
    """Rounding of billed hours, applied to each time entry before pricing."""

    increment: Decimal
    """Size of one step in hours, e.g. ``0.1`` or ``0.25``; must be positive."""
    mode: RoundingMode = RoundingMode.UP
    """Direction of rounding."""


class OverageAction(StrEnum):
    """What happens to billable value beyond a not-to-exceed cap."""

    WRITE_OFF = "write_off"
    """The excess is written off: never billed, reported with reason ``cap``."""
    HOLD = "hold"
    """The excess stays unbilled (on hold) until a change order raises the cap."""


class TaxRounding(StrEnum):
    """Where tax is rounded; each contract pins one."""

    LINE = "line"
    """Tax is rounded on each line and the invoice tax is their sum."""
    INVOICE = "invoice"
    """Tax is rounded once per rate on the invoice, then spread over the lines."""


class UsagePricing(StrEnum):
    GRADUATED = "graduated"
    """Each tier's units at that tier's price."""
    VOLUME = "volume"
    """Every unit at the price of the tier the total falls in."""
    PACKAGE = "package"
    """Whole packages after free units: ceil(max(0, q − free) / size) × price."""


class AdjustmentKind(StrEnum):
    WRITE_DOWN = "write_down"
    """Reduce billable value before invoicing (hours or amount)."""
    WRITE_UP = "write_up"
    """Increase billable value before invoicing (hours or amount)."""


class SkipReason(StrEnum):
    NOT_APPROVED = "not_approved"
    NON_BILLABLE = "non_billable"
    AFTER_AS_OF = "after_as_of"
    ALREADY_BILLED = "already_billed"
    OUTSIDE_PERIOD = "outside_period"
    """Time on a managed-service line dated before the run's period."""
    FIXED_FEE = "fixed_fee"
    """Time on a fixed-fee, recurring or usage line: a cost, not billed by the hour."""


class LineKind(StrEnum):
    TIME = "time"
    EXPENSE = "expense"
    MILESTONE = "milestone"
    PROGRESS = "progress"
    MANAGED_FEE = "managed_fee"
    MANAGED_OVERAGE = "managed_overage"
    RECURRING = "recurring"
    USAGE = "usage"
    PREPAID_FEE = "prepaid_fee"
    PREPAID_DRAWDOWN = "prepaid_drawdown"
    PREPAID_OVERAGE = "prepaid_overage"


# -- reference data -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entity:
    """One of our legal entities: it issues invoices and books in ``currency``."""

    id: str
    country: str
    currency: str
    intercompany_markup_percent: Decimal | None = None
    """Cost-plus markup this entity charges others for its people's time."""


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    country: str
    business: bool = True
    tax_id: str | None = None
    region: str | None = None
    """Explicit region (e.g. ``EU``); otherwise derived from the country."""
    payment_terms_days: int | None = None


@dataclass(frozen=True, slots=True)
class Person:
    id: str
    role: str | None = None
    entity: str | None = None
    """Employing entity; differing from the contract's means an intercompany recharge."""
    cost_rate: Decimal | None = None
    cost_currency: str | None = None


@dataclass(frozen=True, slots=True)
class RateEntry:
    """One rate; the most specific matching entry wins.

    Specificity: person+project > person > role+project > project > role >
    account > default. Within equal specificity the latest ``valid_from`` wins.
    """

    rate: Decimal
    person: str | None = None
    role: str | None = None
    project: str | None = None
    account: str | None = None
    default: bool = False
    valid_from: date | None = None
    valid_to: date | None = None


@dataclass(frozen=True, slots=True)
class RateCard:
    id: str
    currency: str
    entries: tuple[RateEntry, ...]


@dataclass(frozen=True, slots=True)
class FxRate:
    """1 unit of ``from_currency`` = ``rate`` units of ``to_currency`` on ``date``."""

    from_currency: str
    to_currency: str
    date: date
    rate: Decimal


@dataclass(frozen=True, slots=True)
class TaxRule:
    """A row of the tax table; rules are tried in order and the first match wins.

    Every condition left ``None`` matches anything.
    """

    rate: Decimal = Decimal(0)
    seller_country: str | None = None
    buyer_country: str | None = None
    buyer_region: str | None = None
    business: bool | None = None
    category: str | None = None
    reverse_charge: bool = False
    legend: str | None = None
    valid_from: date | None = None
    valid_to: date | None = None


# -- contracts ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _LineBase:
    id: str
    expense_markup_percent: Decimal = Decimal(0)
    """Markup on billable expenses of this line's projects (10 means +10 %)."""
    tax_category: str | None = None


@dataclass(frozen=True, slots=True)
class TimeAndMaterialsLine(_LineBase):
    rate_card: str = ""
    cap: Decimal | None = None
    """Not-to-exceed amount in the contract currency, covering time and expenses."""
    overage: OverageAction = OverageAction.WRITE_OFF
    rounding: Rounding | None = None


@dataclass(frozen=True, slots=True)
class MilestoneDef:
    id: str
    percent: Decimal | None = None
    amount: Decimal | None = None
    acceptance_required: bool = True


@dataclass(frozen=True, slots=True)
class FixedMilestoneLine(_LineBase):
    amount: Decimal = Decimal(0)
    milestones: tuple[MilestoneDef, ...] = ()


@dataclass(frozen=True, slots=True)
class FixedProgressLine(_LineBase):
    amount: Decimal = Decimal(0)
    estimated_cost: Decimal | None = None
    """Estimated total cost at completion, in the contract currency; with ``cost_to_date``
    on progress reports it makes revenue cost-to-cost instead of percent complete."""


@dataclass(frozen=True, slots=True)
class ManagedServiceLine(_LineBase):
    fee: Decimal = Decimal(0)
    included_hours: Decimal = Decimal(0)
    overage_rate: Decimal = Decimal(0)
    rounding: Rounding | None = None


@dataclass(frozen=True, slots=True)
class RecurringLine(_LineBase):
    amount: Decimal = Decimal(0)
    start: date | None = None
    end: date | None = None


@dataclass(frozen=True, slots=True)
class Tier:
    unit_price: Decimal
    up_to: Decimal | None = None
    """Inclusive upper bound of the tier; ``None`` for the last, open tier."""


@dataclass(frozen=True, slots=True)
class UsageLine(_LineBase):
    pricing: UsagePricing = UsagePricing.GRADUATED
    tiers: tuple[Tier, ...] = ()
    package_size: Decimal | None = None
    package_price: Decimal | None = None
    free_units: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class PrepaidBlockLine(_LineBase):
    """A block of hours invoiced up front; hours beyond it bill as overage."""

    hours: Decimal = Decimal(0)
    rate: Decimal = Decimal(0)
    overage_rate: Decimal | None = None
    """Price of an hour beyond the block; defaults to ``rate``."""
    start: date | None = None
    rounding: Rounding | None = None


ContractLine = (
    TimeAndMaterialsLine
    | FixedMilestoneLine
    | FixedProgressLine
    | ManagedServiceLine
    | RecurringLine
    | UsageLine
    | PrepaidBlockLine
)


@dataclass(frozen=True, slots=True)
class Contract:
    id: str
    account: str
    entity: str
    currency: str
    lines: tuple[ContractLine, ...]
    bill_to: str | None = None
    """Bill-to account when it differs from the sold-to ``account``."""
    tax_rounding: TaxRounding = TaxRounding.LINE
    payment_terms_days: int | None = None
    po_number: str | None = None


@dataclass(frozen=True, slots=True)
class Project:
    id: str
    contract_line: str


# -- sources --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimeEntry:
    id: str
    person: str
    project: str
    date: date
    hours: Decimal
    billable: bool = True
    status: str = "approved"
    billed: bool = False


@dataclass(frozen=True, slots=True)
class Expense:
    id: str
    person: str
    project: str
    date: date
    amount: Decimal
    currency: str
    billable: bool = True
    status: str = "approved"
    billed: bool = False
    markup_percent: Decimal | None = None
    """Overrides the line's expense markup for this receipt."""
    category: str | None = None


@dataclass(frozen=True, slots=True)
class MilestoneEvent:
    id: str
    status: str
    date: date | None = None


@dataclass(frozen=True, slots=True)
class ProgressReport:
    contract_line: str
    date: date
    percent_complete: Decimal
    cost_to_date: Decimal | None = None
    """Cost incurred on the line from its start to ``date``, in the contract currency."""


@dataclass(frozen=True, slots=True)
class UsageRecord:
    contract_line: str
    date: date
    quantity: Decimal
    id: str | None = None


@dataclass(frozen=True, slots=True)
class PriorBilled:
    """What earlier runs already invoiced on a line (amount, percent or both)."""

    contract_line: str
    amount: Decimal | None = None
    percent: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Adjustment:
    """A write-down or write-up of one time entry or expense before invoicing."""

    id: str
    source: str
    kind: AdjustmentKind
    hours: Decimal | None = None
    amount: Decimal | None = None
    """In the source's currency (rate-card currency for time)."""
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class BillingWorld:
    """Everything a billing run may read, as of one date."""

    as_of: date
    period_start: date
    period_end: date
    entities: dict[str, Entity]
    accounts: dict[str, Account]
    people: dict[str, Person]
    rate_cards: dict[str, RateCard]
    contracts: tuple[Contract, ...]
    projects: dict[str, Project]
    fx_rates: tuple[FxRate, ...] = ()
    tax_rules: tuple[TaxRule, ...] = ()
    time_entries: tuple[TimeEntry, ...] = ()
    expenses: tuple[Expense, ...] = ()
    milestones: tuple[MilestoneEvent, ...] = ()
    progress: tuple[ProgressReport, ...] = ()
    usage: tuple[UsageRecord, ...] = ()
    prior_billed: tuple[PriorBilled, ...] = ()
    adjustments: tuple[Adjustment, ...] = ()
    intercompany_markup_percent: Decimal | None = None
    """Default cost-plus markup when the employing entity names none."""


# -- results --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    contract_line: str
    kind: LineKind
    quantity: Decimal
    unit_price: Decimal
    """In the invoice currency."""
    amount: Money
    tax: Money
    sources: tuple[str, ...]
    trace: str
    """Why this amount, in words (rate chosen, rounding, conversion, cap, markup)."""
    tax_rate: Decimal = Decimal(0)
    source_currency: str | None = None
    source_amount: Money | None = None
    """Amount in the rate card's or receipt's currency before conversion."""


@dataclass(frozen=True, slots=True)
class Invoice:
    contract: str
    entity: str
    account: str
    bill_to: str
    currency: str
    issue_date: date
    due_date: date | None
    lines: tuple[InvoiceLine, ...]
    net: Money
    tax: Money
    gross: Money
    reverse_charge: bool
    legend: str | None
    customer_tax_id: str | None
    tax_trace: str
    functional: Money | None = None
    """Gross in the issuing entity's currency, when an FX rate is known."""
    po_number: str | None = None


@dataclass(frozen=True, slots=True)
class OverageItem:
    """Value that was not billed this run: written off, or held back."""

    source: str
    contract_line: str
    amount: Money
    reason: str
    hours: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Skipped:
    source: str
    reason: SkipReason


@dataclass(frozen=True, slots=True)
class IntercompanyLine:
    source: str
    hours: Decimal
    cost_rate: Decimal
    amount: Money
    trace: str


@dataclass(frozen=True, slots=True)
class Intercompany:
    """A cost-plus recharge from the employing entity to the contracting one."""

    from_entity: str
    to_entity: str
    currency: str
    markup_percent: Decimal
    lines: tuple[IntercompanyLine, ...]
    amount: Money


@dataclass(frozen=True, slots=True)
class BillingRun:
    as_of: date
    invoices: tuple[Invoice, ...]
    held: tuple[OverageItem, ...]
    written_off: tuple[OverageItem, ...]
    skipped: tuple[Skipped, ...]
    intercompany: tuple[Intercompany, ...] = field(default=())
