"""The canonical domain model: every record Accord keeps agreement on.

These classes are the vocabulary that connectors map to and from, that billing
rules read, and that storage persists. They are plain typed Python — no I/O, no
ORM — so every invariant the business relies on is enforced here, once, and
holds whichever system a record came from.

Conventions:

* Money is :class:`~accord.domain.money.Money` (integer minor units); quantities,
  rates and percents are :class:`~decimal.Decimal`; never a float.
* Values and immutable facts (:class:`FxRate`, :class:`TaxRule`,
  :class:`Adjustment`, lines) are frozen dataclasses. Entities are mutable, but
  only through methods that check the lifecycle tables below and the entity's
  guards; collections are tuples replaced whole, never lists edited in place.
* Every dataclass is keyword-only: records have many fields and a positional
  mix-up between two ids or two dates is a silent bug.
* Effective-dated records have ``valid_from`` / ``valid_to``, both inclusive,
  ``None`` meaning open-ended, and answer :meth:`EffectiveDated.is_valid_on`.
* Bad field values raise :class:`~accord.errors.InvalidInput`; a change that
  would break an invariant raises :class:`~accord.errors.RuleViolation`; a move
  the lifecycle does not allow raises :class:`~accord.errors.InvalidTransition`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import Any, ClassVar

from accord.domain.ids import new_id
from accord.domain.lifecycle import Lifecycle
from accord.domain.money import Money, UnknownCurrency, currency_digits
from accord.errors import InvalidInput, RuleViolation

__all__ = [
    "ACCOUNT_LIFECYCLE",
    "BILLABLE_ITEM_LIFECYCLE",
    "BILLING_SCHEDULE_LINE_LIFECYCLE",
    "CONTACT_LIFECYCLE",
    "CONTRACT_LIFECYCLE",
    "CREDIT_MEMO_LIFECYCLE",
    "EXPENSE_APPROVAL_LIFECYCLE",
    "EXPENSE_BILLING_LIFECYCLE",
    "INVOICE_LIFECYCLE",
    "LEGAL_ENTITY_LIFECYCLE",
    "MILESTONE_LIFECYCLE",
    "MILESTONE_WITHOUT_ACCEPTANCE_LIFECYCLE",
    "OPPORTUNITY_LIFECYCLE",
    "PAYMENT_LIFECYCLE",
    "PERSON_LIFECYCLE",
    "PROJECT_LIFECYCLE",
    "RATE_CARD_LIFECYCLE",
    "REVENUE_LINE_LIFECYCLE",
    "TIME_ENTRY_APPROVAL_LIFECYCLE",
    "TIME_ENTRY_BILLING_LIFECYCLE",
    "Account",
    "AccountEntityLink",
    "AccountRelationship",
    "AccountStatus",
    "ActiveStatus",
    "Adjustment",
    "AdjustmentKind",
    "Allocation",
    "AllocationKind",
    "ApplicationTarget",
    "ApprovalStatus",
    "Assignment",
    "BillableItem",
    "BillableItemStatus",
    "BillingFrequency",
    "BillingModel",
    "BillingSchedule",
    "BillingScheduleLine",
    "BillingStatus",
    "BillingTiming",
    "Contact",
    "ContactRole",
    "ContactStatus",
    "Contract",
    "ContractLine",
    "ContractStatus",
    "CostRate",
    "CreditDisposition",
    "CreditMemo",
    "CreditMemoLine",
    "CreditMemoStatus",
    "EffectiveDated",
    "Expense",
    "FxRate",
    "Invoice",
    "InvoiceLine",
    "InvoiceStatus",
    "LegalEntity",
    "Milestone",
    "MilestoneStatus",
    "Opportunity",
    "OpportunityLine",
    "OpportunityStatus",
    "OveragePolicy",
    "Payment",
    "PaymentApplication",
    "PaymentMethod",
    "PaymentStatus",
    "PercentCompleteMethod",
    "Person",
    "Project",
    "ProjectStatus",
    "RateCard",
    "RateCardEntry",
    "RateCardStatus",
    "RateUnit",
    "RelationshipKind",
    "RevenueLine",
    "RevenueLineStatus",
    "RevenueMethod",
    "RevenueSchedule",
    "ScheduleLineStatus",
    "SourceRecord",
    "TaxId",
    "TaxRule",
    "TimeEntry",
    "normalise_legal_name",
]

_ZERO = Decimal(0)
_HUNDRED = Decimal(100)


# -- validation helpers --------------------------------------------------------


def _check(condition: bool, record: str, field_name: str, message: str) -> None:
    if not condition:
        raise InvalidInput(message, record=record, field=field_name)


def _check_text(value: str, record: str, field_name: str) -> None:
    _check(bool(value and value.strip()), record, field_name, "is required")


def _check_decimal(
    value: object,
    record: str,
    field_name: str,
    *,
    minimum: Decimal | None = _ZERO,
    maximum: Decimal | None = None,
) -> None:
    """Quantities must be finite Decimals; a float here would defeat exact money."""
    if not isinstance(value, Decimal) or not value.is_finite():
        raise InvalidInput(
            f"must be a finite Decimal, not {value!r}", record=record, field=field_name
        )
    if minimum is not None:
        _check(value >= minimum, record, field_name, f"must be at least {minimum}, not {value}")
    if maximum is not None:
        _check(value <= maximum, record, field_name, f"must be at most {maximum}, not {value}")


def _check_currency(code: str, record: str, field_name: str) -> None:
    try:
        currency_digits(code)
    except UnknownCurrency:
        raise InvalidInput(f"unknown currency {code!r}", record=record, field=field_name) from None


def _check_money(
    value: Money, currency: str, record: str, field_name: str, *, non_negative: bool = True
) -> None:
    """Every amount on a document is in that document's currency."""
    _check(
        value.currency == currency,
        record,
        field_name,
        f"is in {value.currency}, expected {currency}",
    )
    if non_negative:
        _check(value.minor >= 0, record, field_name, f"must not be negative, not {value}")


def _check_positive(value: Money, record: str, field_name: str) -> None:
    _check(value.minor > 0, record, field_name, f"must be positive, not {value}")


def _check_period(
    start: date | None,
    end: date | None,
    record: str,
    start_field: str = "valid_from",
    end_field: str = "valid_to",
) -> None:
    if start is not None and end is not None:
        _check(start <= end, record, end_field, f"{end} is before {start_field} {start}")


def _check_country(code: str, record: str, field_name: str) -> None:
    _check(
        len(code) == 2 and code.isascii() and code.isalpha() and code.isupper(),
        record,
        field_name,
        f"must be an ISO 3166 alpha-2 code, not {code!r}",
    )


def _check_set_when(
    value: object | None, current: StrEnum, state: StrEnum, record: str, field_name: str
) -> None:
    """A link (invoice line, merged_into) is present exactly in the state it records."""
    _check((value is not None) == (current is state), record, field_name, f"is set iff {state}")


def _label(kind: str, ident: str) -> str:
    return f"{kind}[{ident}]"


def _without(items: tuple[Allocation, ...], reference: str) -> tuple[Allocation, ...]:
    return tuple(item for item in items if item.reference != reference)


class EffectiveDated:
    """Mixin for records that hold only between ``valid_from`` and ``valid_to``.

    Both bounds are inclusive and ``None`` means open-ended, matching how rate
    cards, tax rules and contract periods are written in contracts.
    """

    __slots__ = ()

    valid_from: date | None
    valid_to: date | None

    def is_valid_on(self, day: date) -> bool:
        return (self.valid_from is None or self.valid_from <= day) and (
            self.valid_to is None or day <= self.valid_to
        )

    def overlaps(self, other: EffectiveDated) -> bool:
        """True when some day is inside both validity periods."""
        starts_in_time = (
            self.valid_from is None or other.valid_to is None or self.valid_from <= other.valid_to
        )
        ends_in_time = (
            self.valid_to is None or other.valid_from is None or other.valid_from <= self.valid_to
        )
        return starts_in_time and ends_in_time


# -- master data: our entities, customers, contacts, people ------------------------


class ActiveStatus(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"


_ACTIVE_INACTIVE = {
    ActiveStatus.ACTIVE: {ActiveStatus.INACTIVE},
    ActiveStatus.INACTIVE: {ActiveStatus.ACTIVE},
}
LEGAL_ENTITY_LIFECYCLE = Lifecycle("LegalEntity", _ACTIVE_INACTIVE)
PERSON_LIFECYCLE = Lifecycle("Person", _ACTIVE_INACTIVE)


@dataclass(frozen=True, slots=True)
class TaxId:
    """A tax identifier under one scheme (``VAT``, ``EIN``, ``GST``).

    Kept per scheme because two records are *known* to be different legal
    persons only when they hold different ids under the same scheme. Spaces are
    removed and letters upper-cased so that formatting never hides a match.
    """

    scheme: str
    value: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "scheme", self.scheme.strip().upper())
        object.__setattr__(self, "value", "".join(self.value.split()).upper())
        _check_text(self.scheme, "TaxId", "scheme")
        _check_text(self.value, "TaxId", "value")


def _known_distinct(ours: Iterable[TaxId], theirs: Iterable[TaxId]) -> bool:
    """True when some scheme has ids on both sides and none of them are shared."""
    mine: dict[str, set[str]] = {}
    for tax_id in ours:
        mine.setdefault(tax_id.scheme, set()).add(tax_id.value)
    other: dict[str, set[str]] = {}
    for tax_id in theirs:
        other.setdefault(tax_id.scheme, set()).add(tax_id.value)
    return any(scheme in other and not values & other[scheme] for scheme, values in mine.items())


_LEGAL_SUFFIXES = frozenset(
    "ab ag as bv co corp corporation company gmbh inc incorporated kg kk limited llc llp "
    "ltd nv oy plc pty sa sarl sas spa srl".split()
)


def normalise_legal_name(name: str) -> str:
    """The legal name reduced for duplicate matching.

    Case-folded, punctuation dropped and trailing legal-form suffixes removed,
    so "ACME, Inc." and "Acme Inc" and "Acme" meet.
    """
    words = re.sub(r"[^\w\s]", " ", name.casefold()).split()
    while len(words) > 1 and words[-1] in _LEGAL_SUFFIXES:
        words.pop()
    return " ".join(words)


@dataclass(slots=True, kw_only=True)
class LegalEntity:
    """One of *our* companies: it contracts, employs, bills and books.

    Its functional currency is the currency it keeps its books in, which is
    what invoices in other currencies are converted to when posted.
    """

    id: str = field(default_factory=new_id)
    name: str
    country: str
    functional_currency: str
    tax_ids: tuple[TaxId, ...] = ()
    parent_id: str | None = None
    status: ActiveStatus = ActiveStatus.ACTIVE

    def __post_init__(self) -> None:
        record = _label("LegalEntity", self.id)
        _check_text(self.name, record, "name")
        _check_country(self.country, record, "country")
        _check_currency(self.functional_currency, record, "functional_currency")
        _check(self.parent_id != self.id, record, "parent_id", "cannot be its own parent")

    def deactivate(self) -> None:
        self.status = LEGAL_ENTITY_LIFECYCLE.advance(self.status, ActiveStatus.INACTIVE)

    def reactivate(self) -> None:
        self.status = LEGAL_ENTITY_LIFECYCLE.advance(self.status, ActiveStatus.ACTIVE)


class AccountStatus(StrEnum):
    PROSPECT = "prospect"
    ACTIVE = "active"
    ON_HOLD = "on_hold"
    INACTIVE = "inactive"
    MERGED = "merged"


ACCOUNT_LIFECYCLE = Lifecycle(
    "Account",
    {
        AccountStatus.PROSPECT: {
            AccountStatus.ACTIVE,
            AccountStatus.INACTIVE,
            AccountStatus.MERGED,
        },
        AccountStatus.ACTIVE: {AccountStatus.ON_HOLD, AccountStatus.INACTIVE, AccountStatus.MERGED},
        AccountStatus.ON_HOLD: {AccountStatus.ACTIVE, AccountStatus.INACTIVE, AccountStatus.MERGED},
        AccountStatus.INACTIVE: {AccountStatus.ACTIVE, AccountStatus.MERGED},
        AccountStatus.MERGED: set(),
    },
)


@dataclass(slots=True, kw_only=True)
class Account:
    """A customer. Sold-to, bill-to and end customer are separate accounts.

    A merged account is kept as a tombstone pointing at the survivor
    (``merged_into``) so that old references and xrefs still resolve.
    """

    id: str = field(default_factory=new_id)
    legal_name: str
    normalised_name: str = ""
    """Filled from ``legal_name`` when empty; used for duplicate matching."""
    tax_ids: tuple[TaxId, ...] = ()
    domain: str | None = None
    parent_id: str | None = None
    ultimate_parent_id: str | None = None
    default_currency: str
    payment_terms_days: int = 30
    credit_limit: Money | None = None
    status: AccountStatus = AccountStatus.PROSPECT
    merged_into: str | None = None

    def __post_init__(self) -> None:
        record = _label("Account", self.id)
        _check_text(self.legal_name, record, "legal_name")
        if not self.normalised_name:
            self.normalised_name = normalise_legal_name(self.legal_name)
        if self.domain is not None:
            self.domain = self.domain.strip().lower()
        _check_currency(self.default_currency, record, "default_currency")
        _check(self.payment_terms_days >= 0, record, "payment_terms_days", "must not be negative")
        if self.credit_limit is not None:
            _check_money(self.credit_limit, self.default_currency, record, "credit_limit")
        _check(self.parent_id != self.id, record, "parent_id", "cannot be its own parent")
        _check_set_when(self.merged_into, self.status, AccountStatus.MERGED, record, "merged_into")
        _check(self.merged_into != self.id, record, "merged_into", "cannot be the account itself")

    def is_known_distinct_from(self, other: Account) -> bool:
        """True when tax ids prove the two accounts are different legal persons."""
        return _known_distinct(self.tax_ids, other.tax_ids)

    def activate(self) -> None:
        self.status = ACCOUNT_LIFECYCLE.advance(self.status, AccountStatus.ACTIVE)

    def hold(self) -> None:
        self.status = ACCOUNT_LIFECYCLE.advance(self.status, AccountStatus.ON_HOLD)

    def deactivate(self) -> None:
        self.status = ACCOUNT_LIFECYCLE.advance(self.status, AccountStatus.INACTIVE)

    def merge_into(self, survivor: Account) -> None:
        """Turn this duplicate into a tombstone pointing at ``survivor``.

        Never across legal entities: when tax ids show the two are different
        legal persons the merge is refused, whoever asked for it.
        """
        if survivor.id == self.id:
            raise RuleViolation(f"account {self.id} cannot be merged into itself")
        if survivor.status is AccountStatus.MERGED:
            raise RuleViolation(
                f"account {survivor.id} is itself merged into {survivor.merged_into}; "
                "merge into the survivor instead"
            )
        if self.is_known_distinct_from(survivor):
            raise RuleViolation(
                f"accounts {self.id} and {survivor.id} are different legal entities "
                "(their tax ids differ)"
            )
        self.status = ACCOUNT_LIFECYCLE.advance(self.status, AccountStatus.MERGED)
        self.merged_into = survivor.id


class RelationshipKind(StrEnum):
    """How ``related_account_id`` stands to ``account_id``."""

    PARENT = "parent"
    SOLD_TO = "sold_to"
    BILL_TO = "bill_to"
    END_CUSTOMER = "end_customer"


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountRelationship(EffectiveDated):
    """A dated edge between two accounts, e.g. "acme is billed to acme-finance".

    Kept explicit and dated because bill-to must never be inferred from the
    CRM hierarchy, and hierarchies change with acquisitions.
    """

    id: str = field(default_factory=new_id)
    account_id: str
    related_account_id: str
    kind: RelationshipKind
    valid_from: date | None = None
    valid_to: date | None = None

    def __post_init__(self) -> None:
        record = _label("AccountRelationship", self.id)
        _check(
            self.account_id != self.related_account_id,
            record,
            "related_account_id",
            "an account cannot be related to itself",
        )
        _check_period(self.valid_from, self.valid_to, record)


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountEntityLink(EffectiveDated):
    """Which of our legal entities may bill an account, and in which currency."""

    id: str = field(default_factory=new_id)
    account_id: str
    entity_id: str
    currency: str
    valid_from: date | None = None
    valid_to: date | None = None

    def __post_init__(self) -> None:
        record = _label("AccountEntityLink", self.id)
        _check_currency(self.currency, record, "currency")
        _check_period(self.valid_from, self.valid_to, record)


class ContactRole(StrEnum):
    BILLING = "billing"
    APPROVER = "approver"


class ContactStatus(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"
    MERGED = "merged"


CONTACT_LIFECYCLE = Lifecycle(
    "Contact",
    {
        ContactStatus.ACTIVE: {ContactStatus.INACTIVE, ContactStatus.MERGED},
        ContactStatus.INACTIVE: {ContactStatus.ACTIVE, ContactStatus.MERGED},
        ContactStatus.MERGED: set(),
    },
)


@dataclass(slots=True, kw_only=True)
class Contact:
    """A person at a customer; roles say who receives invoices and who approves."""

    id: str = field(default_factory=new_id)
    account_id: str
    name: str
    email: str
    roles: frozenset[ContactRole] = frozenset()
    status: ContactStatus = ContactStatus.ACTIVE
    merged_into: str | None = None

    def __post_init__(self) -> None:
        record = _label("Contact", self.id)
        _check_text(self.name, record, "name")
        local, at, domain = self.email.partition("@")
        _check(bool(local and at and domain), record, "email", f"{self.email!r} is not an email")
        _check_set_when(self.merged_into, self.status, ContactStatus.MERGED, record, "merged_into")

    def deactivate(self) -> None:
        self.status = CONTACT_LIFECYCLE.advance(self.status, ContactStatus.INACTIVE)

    def reactivate(self) -> None:
        self.status = CONTACT_LIFECYCLE.advance(self.status, ContactStatus.ACTIVE)

    def merge_into(self, survivor: Contact) -> None:
        if survivor.id == self.id or survivor.status is ContactStatus.MERGED:
            raise RuleViolation(f"contact {self.id} cannot be merged into {survivor.id}")
        self.status = CONTACT_LIFECYCLE.advance(self.status, ContactStatus.MERGED)
        self.merged_into = survivor.id


@dataclass(frozen=True, slots=True, kw_only=True)
class CostRate(EffectiveDated):
    """What an hour of a person costs their employer over a period."""

    rate: Money
    valid_from: date | None = None
    valid_to: date | None = None

    def __post_init__(self) -> None:
        _check_money(self.rate, self.rate.currency, "CostRate", "rate")
        _check_period(self.valid_from, self.valid_to, "CostRate")


@dataclass(slots=True, kw_only=True)
class Person:
    """A resource who delivers work: employed by one of our entities.

    The cost-rate history never overlaps, so the cost of any day is one number
    — margin and intercompany cost-plus depend on it.
    """

    id: str = field(default_factory=new_id)
    name: str
    employing_entity_id: str
    role: str
    capacity_hours_per_week: Decimal = Decimal(40)
    cost_rates: tuple[CostRate, ...] = ()
    status: ActiveStatus = ActiveStatus.ACTIVE

    def __post_init__(self) -> None:
        record = _label("Person", self.id)
        _check_text(self.name, record, "name")
        _check_text(self.role, record, "role")
        _check_decimal(self.capacity_hours_per_week, record, "capacity_hours_per_week")
        history: tuple[CostRate, ...] = ()
        for rate in self.cost_rates:
            self._check_no_overlap(history, rate)
            history += (rate,)

    def _check_no_overlap(self, history: tuple[CostRate, ...], rate: CostRate) -> None:
        if any(existing.overlaps(rate) for existing in history):
            raise RuleViolation(f"person {self.id} already has a cost rate in that period")

    def add_cost_rate(self, rate: CostRate) -> None:
        self._check_no_overlap(self.cost_rates, rate)
        self.cost_rates += (rate,)

    def cost_rate_on(self, day: date) -> Money | None:
        return next((rate.rate for rate in self.cost_rates if rate.is_valid_on(day)), None)

    def deactivate(self) -> None:
        self.status = PERSON_LIFECYCLE.advance(self.status, ActiveStatus.INACTIVE)

    def reactivate(self) -> None:
        self.status = PERSON_LIFECYCLE.advance(self.status, ActiveStatus.ACTIVE)


# -- selling: opportunities, contracts, rate cards -------------------------------


class OpportunityStatus(StrEnum):
    OPEN = "open"
    CLOSED_WON = "closed_won"
    CLOSED_LOST = "closed_lost"


OPPORTUNITY_LIFECYCLE = Lifecycle(
    "Opportunity",
    {
        OpportunityStatus.OPEN: {OpportunityStatus.CLOSED_WON, OpportunityStatus.CLOSED_LOST},
        OpportunityStatus.CLOSED_WON: set(),
        OpportunityStatus.CLOSED_LOST: set(),
    },
)


@dataclass(frozen=True, slots=True, kw_only=True)
class OpportunityLine:
    id: str = field(default_factory=new_id)
    product: str
    quantity: Decimal
    unit_price: Money

    def __post_init__(self) -> None:
        record = _label("OpportunityLine", self.id)
        _check_text(self.product, record, "product")
        _check_decimal(self.quantity, record, "quantity")
        _check_money(self.unit_price, self.unit_price.currency, record, "unit_price")

    @property
    def amount(self) -> Money:
        return self.unit_price.times(self.quantity)


@dataclass(slots=True, kw_only=True)
class Opportunity:
    """A deal in the CRM. Its amount is the sum of its lines when it has any.

    ``stage`` is the CRM's own label ("proposal"); ``status`` is the part of it
    Accord acts on. A closed opportunity is history and no longer changes.
    """

    id: str = field(default_factory=new_id)
    account_id: str
    name: str
    currency: str
    close_date: date
    stage: str = ""
    estimated_amount: Money | None = None
    lines: tuple[OpportunityLine, ...] = ()
    status: OpportunityStatus = OpportunityStatus.OPEN

    def __post_init__(self) -> None:
        record = _label("Opportunity", self.id)
        _check_text(self.name, record, "name")
        _check_currency(self.currency, record, "currency")
        if self.estimated_amount is not None:
            _check_money(self.estimated_amount, self.currency, record, "estimated_amount")
        for line in self.lines:
            _check_money(line.unit_price, self.currency, record, "lines")

    @property
    def amount(self) -> Money:
        if self.lines:
            return Money.sum((line.amount for line in self.lines), self.currency)
        return self.estimated_amount or Money.zero(self.currency)

    def add_line(self, line: OpportunityLine) -> None:
        if self.status is not OpportunityStatus.OPEN:
            raise RuleViolation(f"opportunity {self.id} is {self.status}; it no longer changes")
        _check_money(line.unit_price, self.currency, _label("Opportunity", self.id), "lines")
        self.lines += (line,)

    def win(self, on: date) -> None:
        self.status = OPPORTUNITY_LIFECYCLE.advance(self.status, OpportunityStatus.CLOSED_WON)
        self.close_date = on

    def lose(self, on: date) -> None:
        self.status = OPPORTUNITY_LIFECYCLE.advance(self.status, OpportunityStatus.CLOSED_LOST)
        self.close_date = on


class BillingModel(StrEnum):
    TIME_AND_MATERIALS = "time_and_materials"
    FIXED_MILESTONE = "fixed_milestone"
    FIXED_PROGRESS = "fixed_progress"
    PREPAID_BLOCK = "prepaid_block"
    MANAGED_SERVICE = "managed_service"
    RECURRING = "recurring"
    USAGE = "usage"


_FIXED_AMOUNT_MODELS = frozenset(
    {
        BillingModel.FIXED_MILESTONE,
        BillingModel.FIXED_PROGRESS,
        BillingModel.PREPAID_BLOCK,
        BillingModel.MANAGED_SERVICE,
        BillingModel.RECURRING,
    }
)


class OveragePolicy(StrEnum):
    """What happens to work beyond a not-to-exceed cap."""

    WRITE_OFF = "write_off"
    """Bill up to the cap and write the rest off."""
    HOLD = "hold"
    """Keep the rest unbilled until a change order raises the cap."""


class RevenueMethod(StrEnum):
    RIGHT_TO_INVOICE = "right_to_invoice"
    COST_TO_COST = "cost_to_cost"
    MILESTONE = "milestone"
    RATABLE = "ratable"


@dataclass(frozen=True, slots=True, kw_only=True)
class ContractLine:
    """One priced promise of a contract: how it bills and how it earns revenue.

    Line ids stay the same across amendments, so "already billed on this line"
    carries over from one contract version to the next.
    """

    id: str = field(default_factory=new_id)
    billing_model: BillingModel
    amount: Money | None = None
    """Fixed price, fee or block value (required for fixed-amount models)."""
    cap: Money | None = None
    """Not-to-exceed amount over everything billed on the line."""
    overage_policy: OveragePolicy = OveragePolicy.WRITE_OFF
    rate_card_id: str | None = None
    billing_schedule_id: str | None = None
    revenue_method: RevenueMethod = RevenueMethod.RIGHT_TO_INVOICE
    tax_code: str | None = None

    def __post_init__(self) -> None:
        record = _label("ContractLine", self.id)
        if self.billing_model is BillingModel.TIME_AND_MATERIALS:
            _check(self.rate_card_id is not None, record, "rate_card_id", "T&M needs a rate card")
        if self.billing_model in _FIXED_AMOUNT_MODELS:
            _check(self.amount is not None, record, "amount", f"{self.billing_model} needs one")
        for name, value in (("amount", self.amount), ("cap", self.cap)):
            if value is not None:
                _check_money(value, value.currency, record, name)

    def check_currency(self, currency: str) -> None:
        record = _label("ContractLine", self.id)
        for name, value in (("amount", self.amount), ("cap", self.cap)):
            if value is not None:
                _check_money(value, currency, record, name)


class ContractStatus(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    EXPIRED = "expired"
    TERMINATED = "terminated"
    SUPERSEDED = "superseded"


CONTRACT_LIFECYCLE = Lifecycle(
    "Contract",
    {
        ContractStatus.DRAFT: {ContractStatus.ACTIVE},
        ContractStatus.ACTIVE: {
            ContractStatus.EXPIRED,
            ContractStatus.TERMINATED,
            ContractStatus.SUPERSEDED,
        },
        ContractStatus.EXPIRED: set(),
        ContractStatus.TERMINATED: set(),
        ContractStatus.SUPERSEDED: set(),
    },
)

_AMENDMENT_FIXED_FIELDS = frozenset({"id", "version", "amends", "status", "account_id"})


@dataclass(slots=True, kw_only=True)
class Contract:
    """What we agreed with a customer, which of our entities is party to it,
    and who pays. Terms change only by amendment: a new version that names the
    one it amends, so every invoice can be traced to the terms in force.
    """

    id: str = field(default_factory=new_id)
    account_id: str
    bill_to_account_id: str
    entity_id: str
    currency: str
    start_date: date
    end_date: date | None = None
    payment_terms_days: int = 30
    po_number: str | None = None
    version: int = 1
    amends: str | None = None
    lines: tuple[ContractLine, ...] = ()
    status: ContractStatus = ContractStatus.DRAFT

    def __post_init__(self) -> None:
        record = _label("Contract", self.id)
        _check_currency(self.currency, record, "currency")
        _check_period(self.start_date, self.end_date, record, "start_date", "end_date")
        _check(self.payment_terms_days >= 0, record, "payment_terms_days", "must not be negative")
        _check(self.version >= 1, record, "version", "starts at 1")
        _check(
            (self.version > 1) == (self.amends is not None),
            record,
            "amends",
            "names the previous version exactly when version > 1",
        )
        _check(self.amends != self.id, record, "amends", "a contract cannot amend itself")
        for line in self.lines:
            line.check_currency(self.currency)
        _check(
            len({line.id for line in self.lines}) == len(self.lines),
            record,
            "lines",
            "line ids must be unique",
        )

    def line(self, line_id: str) -> ContractLine:
        for line in self.lines:
            if line.id == line_id:
                return line
        raise InvalidInput(
            f"no line {line_id!r}", record=_label("Contract", self.id), field="lines"
        )

    def add_line(self, line: ContractLine) -> None:
        if self.status is not ContractStatus.DRAFT:
            raise RuleViolation(f"contract {self.id} is {self.status}; amend it instead")
        line.check_currency(self.currency)
        if any(existing.id == line.id for existing in self.lines):
            raise InvalidInput(f"duplicate line {line.id!r}", record=self.id, field="lines")
        self.lines += (line,)

    def activate(self) -> None:
        if not self.lines:
            raise RuleViolation(f"contract {self.id} has no lines to activate")
        self.status = CONTRACT_LIFECYCLE.advance(self.status, ContractStatus.ACTIVE)

    def expire(self) -> None:
        self.status = CONTRACT_LIFECYCLE.advance(self.status, ContractStatus.EXPIRED)

    def terminate(self) -> None:
        self.status = CONTRACT_LIFECYCLE.advance(self.status, ContractStatus.TERMINATED)

    def amend(self, *, amendment_id: str | None = None, **changes: Any) -> Contract:
        """Draft the next version of an active contract with ``changes`` applied.

        The new version has ``version + 1`` and ``amends`` = this id; this
        version stays active until :meth:`supersede` is called with it.
        Identity and party fields cannot change by amendment.
        """
        if self.status is not ContractStatus.ACTIVE:
            raise RuleViolation(
                f"only an active contract can be amended; {self.id} is {self.status}"
            )
        fixed = _AMENDMENT_FIXED_FIELDS & changes.keys()
        if fixed:
            raise InvalidInput(
                f"an amendment cannot change {', '.join(sorted(fixed))}",
                record=_label("Contract", self.id),
            )
        try:
            return replace(
                self,
                id=amendment_id or new_id(),
                version=self.version + 1,
                amends=self.id,
                status=ContractStatus.DRAFT,
                **changes,
            )
        except TypeError as error:
            raise InvalidInput(str(error), record=_label("Contract", self.id)) from None

    def supersede(self, amendment: Contract) -> None:
        """Retire this version in favour of ``amendment`` (its next version)."""
        if amendment.amends != self.id or amendment.version != self.version + 1:
            raise RuleViolation(
                f"contract {amendment.id} v{amendment.version} is not the next version "
                f"of {self.id} v{self.version}"
            )
        self.status = CONTRACT_LIFECYCLE.advance(self.status, ContractStatus.SUPERSEDED)


class RateUnit(StrEnum):
    HOUR = "hour"
    DAY = "day"


@dataclass(frozen=True, slots=True, kw_only=True)
class RateCardEntry(EffectiveDated):
    """One price of a rate card. Empty keys are wildcards; no keys = default.

    Which entry wins (person+project > person > role+project > role >
    default) is a billing rule; the entry only says what it matches.
    """

    id: str = field(default_factory=new_id)
    rate: Money
    unit: RateUnit = RateUnit.HOUR
    person_id: str | None = None
    role: str | None = None
    project_id: str | None = None
    account_id: str | None = None
    valid_from: date | None = None
    valid_to: date | None = None

    def __post_init__(self) -> None:
        record = _label("RateCardEntry", self.id)
        _check_money(self.rate, self.rate.currency, record, "rate")
        _check_period(self.valid_from, self.valid_to, record)

    @property
    def keys(self) -> tuple[str | None, str | None, str | None, str | None]:
        return (self.person_id, self.role, self.project_id, self.account_id)

    @property
    def is_default(self) -> bool:
        return all(key is None for key in self.keys)


class RateCardStatus(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    SUPERSEDED = "superseded"


RATE_CARD_LIFECYCLE = Lifecycle(
    "RateCard",
    {
        RateCardStatus.DRAFT: {RateCardStatus.ACTIVE},
        RateCardStatus.ACTIVE: {RateCardStatus.SUPERSEDED},
        RateCardStatus.SUPERSEDED: set(),
    },
)


@dataclass(slots=True, kw_only=True)
class RateCard:
    """Prices for work, in one currency. Edited only as a draft: once active,
    a change is a new card that supersedes this one, so past invoices keep the
    prices they were billed at.
    """

    id: str = field(default_factory=new_id)
    name: str
    currency: str
    entries: tuple[RateCardEntry, ...] = ()
    status: RateCardStatus = RateCardStatus.DRAFT
    superseded_by: str | None = None

    def __post_init__(self) -> None:
        record = _label("RateCard", self.id)
        _check_text(self.name, record, "name")
        _check_currency(self.currency, record, "currency")
        entries, self.entries = self.entries, ()
        for entry in entries:
            self._check_entry(entry)
            self.entries += (entry,)

    def _check_entry(self, entry: RateCardEntry) -> None:
        _check_money(entry.rate, self.currency, _label("RateCard", self.id), "entries")
        for existing in self.entries:
            if (
                existing.keys == entry.keys
                and existing.unit is entry.unit
                and existing.overlaps(entry)
            ):
                raise RuleViolation(
                    f"rate card {self.id}: entries {existing.id} and {entry.id} price the "
                    "same work over overlapping dates"
                )

    def add_entry(self, entry: RateCardEntry) -> None:
        if self.status is not RateCardStatus.DRAFT:
            raise RuleViolation(f"rate card {self.id} is {self.status}; supersede it instead")
        self._check_entry(entry)
        self.entries += (entry,)

    def activate(self) -> None:
        if not self.entries:
            raise RuleViolation(f"rate card {self.id} has no entries")
        self.status = RATE_CARD_LIFECYCLE.advance(self.status, RateCardStatus.ACTIVE)

    def supersede(self, successor_id: str) -> None:
        if successor_id == self.id:
            raise RuleViolation(f"rate card {self.id} cannot supersede itself")
        self.status = RATE_CARD_LIFECYCLE.advance(self.status, RateCardStatus.SUPERSEDED)
        self.superseded_by = successor_id


# -- delivery: projects, assignments, time, expenses, milestones -----------------


class PercentCompleteMethod(StrEnum):
    COST_TO_COST = "cost_to_cost"
    HOURS = "hours"
    MANUAL = "manual"


class ProjectStatus(StrEnum):
    PLANNED = "planned"
    ACTIVE = "active"
    ON_HOLD = "on_hold"
    COMPLETED = "completed"
    CLOSED = "closed"


PROJECT_LIFECYCLE = Lifecycle(
    "Project",
    {
        ProjectStatus.PLANNED: {ProjectStatus.ACTIVE},
        ProjectStatus.ACTIVE: {ProjectStatus.ON_HOLD, ProjectStatus.COMPLETED},
        ProjectStatus.ON_HOLD: {ProjectStatus.ACTIVE, ProjectStatus.COMPLETED},
        ProjectStatus.COMPLETED: {ProjectStatus.CLOSED},
        ProjectStatus.CLOSED: set(),
    },
)


@dataclass(slots=True, kw_only=True)
class Project:
    """Delivery work; time and expenses reach contract lines through it."""

    id: str = field(default_factory=new_id)
    name: str
    account_id: str
    delivering_entity_id: str
    contract_line_ids: tuple[str, ...] = ()
    manager_id: str | None = None
    budget: Money | None = None
    percent_complete_method: PercentCompleteMethod = PercentCompleteMethod.COST_TO_COST
    status: ProjectStatus = ProjectStatus.PLANNED

    def __post_init__(self) -> None:
        record = _label("Project", self.id)
        _check_text(self.name, record, "name")
        if self.budget is not None:
            _check_money(self.budget, self.budget.currency, record, "budget")

    def _move(self, target: ProjectStatus) -> None:
        self.status = PROJECT_LIFECYCLE.advance(self.status, target)

    def start(self) -> None:
        self._move(ProjectStatus.ACTIVE)

    def hold(self) -> None:
        self._move(ProjectStatus.ON_HOLD)

    def resume(self) -> None:
        if self.status is not ProjectStatus.ON_HOLD:
            raise RuleViolation(f"project {self.id} is {self.status}, not on hold")
        self._move(ProjectStatus.ACTIVE)

    def complete(self) -> None:
        self._move(ProjectStatus.COMPLETED)

    def close(self) -> None:
        self._move(ProjectStatus.CLOSED)


@dataclass(frozen=True, slots=True, kw_only=True)
class Assignment(EffectiveDated):
    """A person staffed on a project in a role, possibly at a negotiated rate."""

    id: str = field(default_factory=new_id)
    person_id: str
    project_id: str
    role: str
    rate_override: Money | None = None
    valid_from: date | None = None
    valid_to: date | None = None

    def __post_init__(self) -> None:
        record = _label("Assignment", self.id)
        _check_text(self.role, record, "role")
        if self.rate_override is not None:
            _check_money(self.rate_override, self.rate_override.currency, record, "rate_override")
        _check_period(self.valid_from, self.valid_to, record)


class ApprovalStatus(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    APPROVED = "approved"
    REJECTED = "rejected"


class BillingStatus(StrEnum):
    UNBILLED = "unbilled"
    BILLED = "billed"
    ON_HOLD = "on_hold"
    WRITTEN_OFF = "written_off"


class CreditDisposition(StrEnum):
    """What a credited line means for the work it billed."""

    REBILL = "rebill"
    """The work becomes billable again (its invoice-line link is cleared)."""
    WRITE_OFF = "write_off"
    """The work will never be billed."""


_APPROVAL = {
    ApprovalStatus.DRAFT: {ApprovalStatus.SUBMITTED},
    ApprovalStatus.SUBMITTED: {ApprovalStatus.APPROVED, ApprovalStatus.REJECTED},
    ApprovalStatus.APPROVED: {ApprovalStatus.DRAFT},  # reopened, only while unbilled
    ApprovalStatus.REJECTED: {ApprovalStatus.DRAFT},  # reopened to be corrected
}
_SOURCE_BILLING = {
    BillingStatus.UNBILLED: {
        BillingStatus.BILLED,
        BillingStatus.ON_HOLD,
        BillingStatus.WRITTEN_OFF,
    },
    BillingStatus.ON_HOLD: {
        BillingStatus.UNBILLED,
        BillingStatus.BILLED,
        BillingStatus.WRITTEN_OFF,
    },
    BillingStatus.BILLED: {BillingStatus.UNBILLED, BillingStatus.WRITTEN_OFF},  # credited
    BillingStatus.WRITTEN_OFF: set(),
}
TIME_ENTRY_APPROVAL_LIFECYCLE = Lifecycle("TimeEntry approval", _APPROVAL)
TIME_ENTRY_BILLING_LIFECYCLE = Lifecycle("TimeEntry billing", _SOURCE_BILLING)
EXPENSE_APPROVAL_LIFECYCLE = Lifecycle("Expense approval", _APPROVAL)
EXPENSE_BILLING_LIFECYCLE = Lifecycle("Expense billing", _SOURCE_BILLING)


@dataclass(slots=True, kw_only=True)
class SourceRecord:
    """What time entries and expenses share: approval, and billing by link.

    The record keeps the id of the invoice line that billed it; "unbilled"
    means that link is empty. While the link is set the record is locked: it
    cannot be edited or billed again. A rebill credit clears the link so the
    work is billable again; a write-off credit closes it for good. A base
    class only: each subclass names its own lifecycles for its errors.
    """

    approval_lifecycle: ClassVar[Lifecycle[ApprovalStatus]]
    billing_lifecycle: ClassVar[Lifecycle[BillingStatus]]

    id: str = field(default_factory=new_id)
    person_id: str
    project_id: str
    work_date: date
    billable: bool = True
    approval: ApprovalStatus = ApprovalStatus.DRAFT
    billing: BillingStatus = BillingStatus.UNBILLED
    invoice_line_id: str | None = None

    def __post_init__(self) -> None:
        record = self._record
        _check_set_when(
            self.invoice_line_id, self.billing, BillingStatus.BILLED, record, "invoice_line_id"
        )
        if self.billing is not BillingStatus.UNBILLED:
            _check(
                self.approval is ApprovalStatus.APPROVED and self.billable,
                record,
                "billing",
                "only approved billable records leave unbilled",
            )

    @property
    def _record(self) -> str:
        return _label(type(self).__name__, self.id)

    @property
    def is_unbilled(self) -> bool:
        """No invoice line bills this record (DOMAIN: the link is empty)."""
        return self.invoice_line_id is None

    @property
    def is_locked(self) -> bool:
        return self.invoice_line_id is not None

    @property
    def can_be_billed(self) -> bool:
        """Approved, billable, and neither billed, held nor written off."""
        return (
            self.approval is ApprovalStatus.APPROVED
            and self.billable
            and self.billing is BillingStatus.UNBILLED
        )

    def _ensure_editable(self) -> None:
        if self.is_locked:
            raise RuleViolation(
                f"{self._record} is billed on {self.invoice_line_id} and locked; "
                "credit it to change it"
            )
        if self.approval not in (ApprovalStatus.DRAFT, ApprovalStatus.REJECTED):
            raise RuleViolation(f"{self._record} is {self.approval}; reopen it to edit")

    def _approve_move(self, target: ApprovalStatus) -> None:
        self.approval = self.approval_lifecycle.advance(self.approval, target)

    def submit(self) -> None:
        self._approve_move(ApprovalStatus.SUBMITTED)

    def approve(self) -> None:
        self._approve_move(ApprovalStatus.APPROVED)

    def reject(self) -> None:
        self._approve_move(ApprovalStatus.REJECTED)

    def reopen(self) -> None:
        """Back to draft for correction; never once billing has acted on it."""
        if self.billing is not BillingStatus.UNBILLED:
            raise RuleViolation(f"{self._record} is {self.billing}; it cannot be reopened")
        self._approve_move(ApprovalStatus.DRAFT)

    def _bill_move(self, target: BillingStatus) -> None:
        if not (self.approval is ApprovalStatus.APPROVED and self.billable):
            raise RuleViolation(
                f"{self._record} must be approved and billable to become {target}"
                f" (it is {self.approval}, billable={self.billable})"
            )
        self.billing = self.billing_lifecycle.advance(self.billing, target)

    def mark_billed(self, invoice_line_id: str) -> None:
        _check_text(invoice_line_id, self._record, "invoice_line_id")
        self._bill_move(BillingStatus.BILLED)
        self.invoice_line_id = invoice_line_id

    def hold(self) -> None:
        self._bill_move(BillingStatus.ON_HOLD)

    def release(self) -> None:
        if self.billing is not BillingStatus.ON_HOLD:
            raise RuleViolation(f"{self._record} is {self.billing}, not on hold")
        self._bill_move(BillingStatus.UNBILLED)

    def write_off(self) -> None:
        if self.billing is BillingStatus.BILLED:
            raise RuleViolation(f"{self._record} is billed; credit it with write_off instead")
        self._bill_move(BillingStatus.WRITTEN_OFF)

    def credit(self, disposition: CreditDisposition) -> None:
        """A credit memo line reversed the invoice line that billed this record."""
        if self.billing is not BillingStatus.BILLED:
            raise RuleViolation(f"{self._record} is {self.billing}; only billed work is credited")
        if disposition is CreditDisposition.REBILL:
            self._bill_move(BillingStatus.UNBILLED)
        else:
            self._bill_move(BillingStatus.WRITTEN_OFF)
        self.invoice_line_id = None


@dataclass(slots=True, kw_only=True)
class TimeEntry(SourceRecord):
    """Hours a person worked on a project on one day."""

    approval_lifecycle: ClassVar[Lifecycle[ApprovalStatus]] = TIME_ENTRY_APPROVAL_LIFECYCLE
    billing_lifecycle: ClassVar[Lifecycle[BillingStatus]] = TIME_ENTRY_BILLING_LIFECYCLE

    hours: Decimal
    activity: str = ""

    def __post_init__(self) -> None:
        _check_decimal(self.hours, self._record, "hours", maximum=Decimal(24))
        SourceRecord.__post_init__(self)

    def revise(
        self,
        *,
        hours: Decimal | None = None,
        billable: bool | None = None,
        activity: str | None = None,
    ) -> None:
        """Correct a draft or rejected entry; refused once billed."""
        self._ensure_editable()
        if hours is not None:
            _check_decimal(hours, self._record, "hours", maximum=Decimal(24))
            self.hours = hours
        if billable is not None:
            self.billable = billable
        if activity is not None:
            self.activity = activity


@dataclass(slots=True, kw_only=True)
class Expense(SourceRecord):
    """Money a person spent for a project; billable ones are re-invoiced,
    possibly with a markup, and every approved one is reimbursed once.
    """

    approval_lifecycle: ClassVar[Lifecycle[ApprovalStatus]] = EXPENSE_APPROVAL_LIFECYCLE
    billing_lifecycle: ClassVar[Lifecycle[BillingStatus]] = EXPENSE_BILLING_LIFECYCLE

    category: str
    amount: Money
    markup_percent: Decimal = _ZERO
    reimbursed_on: date | None = None

    def __post_init__(self) -> None:
        self._check_values(self.category, self.amount, self.markup_percent)
        SourceRecord.__post_init__(self)
        if self.reimbursed_on is not None:
            _check(
                self.approval is ApprovalStatus.APPROVED,
                self._record,
                "reimbursed_on",
                "only approved expenses are reimbursed",
            )

    def _check_values(self, category: str, amount: Money, markup_percent: Decimal) -> None:
        _check_text(category, self._record, "category")
        _check_money(amount, amount.currency, self._record, "amount")
        _check_decimal(markup_percent, self._record, "markup_percent")

    @property
    def amount_with_markup(self) -> Money:
        """What the customer is charged, in the receipt's currency."""
        return self.amount.times(1 + self.markup_percent / _HUNDRED)

    def revise(
        self,
        *,
        amount: Money | None = None,
        category: str | None = None,
        billable: bool | None = None,
        markup_percent: Decimal | None = None,
    ) -> None:
        """Correct a draft or rejected expense; refused once billed."""
        self._ensure_editable()
        new_amount = self.amount if amount is None else amount
        new_category = self.category if category is None else category
        new_markup = self.markup_percent if markup_percent is None else markup_percent
        self._check_values(new_category, new_amount, new_markup)
        self.amount, self.category, self.markup_percent = new_amount, new_category, new_markup
        if billable is not None:
            self.billable = billable

    def reimburse(self, on: date) -> None:
        if self.approval is not ApprovalStatus.APPROVED:
            raise RuleViolation(f"{self._record} is {self.approval}; only approved is reimbursed")
        if self.reimbursed_on is not None:
            raise RuleViolation(f"{self._record} was already reimbursed on {self.reimbursed_on}")
        self.reimbursed_on = on

    def reopen(self) -> None:
        if self.reimbursed_on is not None:
            raise RuleViolation(f"{self._record} is reimbursed; it cannot be reopened")
        SourceRecord.reopen(self)


class MilestoneStatus(StrEnum):
    PLANNED = "planned"
    REACHED = "reached"
    ACCEPTED = "accepted"
    BILLED = "billed"


MILESTONE_LIFECYCLE = Lifecycle(
    "Milestone",
    {
        MilestoneStatus.PLANNED: {MilestoneStatus.REACHED},
        MilestoneStatus.REACHED: {MilestoneStatus.ACCEPTED},
        MilestoneStatus.ACCEPTED: {MilestoneStatus.BILLED},
        MilestoneStatus.BILLED: set(),
    },
)
MILESTONE_WITHOUT_ACCEPTANCE_LIFECYCLE = Lifecycle(
    "Milestone",
    {
        MilestoneStatus.PLANNED: {MilestoneStatus.REACHED},
        MilestoneStatus.REACHED: {MilestoneStatus.ACCEPTED, MilestoneStatus.BILLED},
        MilestoneStatus.ACCEPTED: {MilestoneStatus.BILLED},
        MilestoneStatus.BILLED: set(),
    },
)


@dataclass(slots=True, kw_only=True)
class Milestone:
    """A fixed-fee instalment, due when reached or — usually — accepted.

    Worth either a fixed ``amount`` or a ``percent`` of its line's amount.
    When ``acceptance_required`` is false it may be billed once reached.
    """

    id: str = field(default_factory=new_id)
    contract_line_id: str
    name: str = ""
    due_date: date | None = None
    amount: Money | None = None
    percent: Decimal | None = None
    acceptance_required: bool = True
    status: MilestoneStatus = MilestoneStatus.PLANNED
    reached_on: date | None = None
    accepted_on: date | None = None
    invoice_line_id: str | None = None

    def __post_init__(self) -> None:
        record = _label("Milestone", self.id)
        _check(
            (self.amount is None) != (self.percent is None),
            record,
            "amount",
            "give exactly one of amount or percent",
        )
        if self.amount is not None:
            _check_money(self.amount, self.amount.currency, record, "amount")
        if self.percent is not None:
            _check_decimal(self.percent, record, "percent", maximum=_HUNDRED)
        _check_set_when(
            self.invoice_line_id, self.status, MilestoneStatus.BILLED, record, "invoice_line_id"
        )

    @property
    def lifecycle(self) -> Lifecycle[MilestoneStatus]:
        if self.acceptance_required:
            return MILESTONE_LIFECYCLE
        return MILESTONE_WITHOUT_ACCEPTANCE_LIFECYCLE

    def value_of(self, line_amount: Money) -> Money:
        """What the milestone bills, given its contract line's fixed amount."""
        if self.amount is not None:
            _check_money(self.amount, line_amount.currency, _label("Milestone", self.id), "amount")
            return self.amount
        return line_amount.times((self.percent or _ZERO) / _HUNDRED)

    def reach(self, on: date) -> None:
        self.status = self.lifecycle.advance(self.status, MilestoneStatus.REACHED)
        self.reached_on = on

    def accept(self, on: date) -> None:
        self.status = self.lifecycle.advance(self.status, MilestoneStatus.ACCEPTED)
        self.accepted_on = on

    def mark_billed(self, invoice_line_id: str) -> None:
        _check_text(invoice_line_id, _label("Milestone", self.id), "invoice_line_id")
        self.status = self.lifecycle.advance(self.status, MilestoneStatus.BILLED)
        self.invoice_line_id = invoice_line_id


# -- billing: schedules, billable items, invoices, credits, payments ---------------


class BillingFrequency(StrEnum):
    ONCE = "once"
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"
    ANNUALLY = "annually"


class BillingTiming(StrEnum):
    IN_ADVANCE = "in_advance"
    IN_ARREARS = "in_arrears"


class ScheduleLineStatus(StrEnum):
    SCHEDULED = "scheduled"
    DUE = "due"
    BILLED = "billed"
    CANCELLED = "cancelled"


BILLING_SCHEDULE_LINE_LIFECYCLE = Lifecycle(
    "BillingScheduleLine",
    {
        ScheduleLineStatus.SCHEDULED: {ScheduleLineStatus.DUE, ScheduleLineStatus.CANCELLED},
        ScheduleLineStatus.DUE: {ScheduleLineStatus.BILLED, ScheduleLineStatus.CANCELLED},
        ScheduleLineStatus.BILLED: set(),
        ScheduleLineStatus.CANCELLED: set(),
    },
)


@dataclass(slots=True, kw_only=True)
class BillingScheduleLine:
    """One planned charge of a schedule: what to bill, and on which date."""

    id: str = field(default_factory=new_id)
    billing_date: date
    amount: Money
    status: ScheduleLineStatus = ScheduleLineStatus.SCHEDULED
    invoice_line_id: str | None = None

    def __post_init__(self) -> None:
        record = _label("BillingScheduleLine", self.id)
        _check_money(self.amount, self.amount.currency, record, "amount")
        _check_set_when(
            self.invoice_line_id, self.status, ScheduleLineStatus.BILLED, record, "invoice_line_id"
        )

    def fall_due(self) -> None:
        self.status = BILLING_SCHEDULE_LINE_LIFECYCLE.advance(self.status, ScheduleLineStatus.DUE)

    def mark_billed(self, invoice_line_id: str) -> None:
        _check_text(invoice_line_id, _label("BillingScheduleLine", self.id), "invoice_line_id")
        self.status = BILLING_SCHEDULE_LINE_LIFECYCLE.advance(
            self.status, ScheduleLineStatus.BILLED
        )
        self.invoice_line_id = invoice_line_id

    def cancel(self) -> None:
        self.status = BILLING_SCHEDULE_LINE_LIFECYCLE.advance(
            self.status, ScheduleLineStatus.CANCELLED
        )


@dataclass(slots=True, kw_only=True)
class BillingSchedule:
    """When a contract line's fixed charges are billed (in advance or arrears)."""

    id: str = field(default_factory=new_id)
    contract_line_id: str
    currency: str
    frequency: BillingFrequency
    timing: BillingTiming = BillingTiming.IN_ADVANCE
    anchor_day: int = 1
    lines: tuple[BillingScheduleLine, ...] = ()

    def __post_init__(self) -> None:
        record = _label("BillingSchedule", self.id)
        _check_currency(self.currency, record, "currency")
        _check(1 <= self.anchor_day <= 31, record, "anchor_day", "must be a day of month 1-31")
        for line in self.lines:
            _check_money(line.amount, self.currency, record, "lines")

    @property
    def total(self) -> Money:
        live = (
            line.amount for line in self.lines if line.status is not ScheduleLineStatus.CANCELLED
        )
        return Money.sum(live, self.currency)

    def add_line(self, line: BillingScheduleLine) -> None:
        _check_money(line.amount, self.currency, _label("BillingSchedule", self.id), "lines")
        self.lines += (line,)

    def fall_due(self, as_of: date) -> list[BillingScheduleLine]:
        """Mark every scheduled line dated on or before ``as_of`` due; return them."""
        due = [
            line
            for line in self.lines
            if line.status is ScheduleLineStatus.SCHEDULED and line.billing_date <= as_of
        ]
        for line in due:
            line.fall_due()
        return due


class BillableItemStatus(StrEnum):
    PENDING = "pending"
    READY = "ready"
    ON_HOLD = "on_hold"
    INVOICED = "invoiced"
    WRITTEN_OFF = "written_off"


BILLABLE_ITEM_LIFECYCLE = Lifecycle(
    "BillableItem",
    {
        BillableItemStatus.PENDING: {
            BillableItemStatus.READY,
            BillableItemStatus.ON_HOLD,
            BillableItemStatus.WRITTEN_OFF,
        },
        BillableItemStatus.READY: {
            BillableItemStatus.ON_HOLD,
            BillableItemStatus.INVOICED,
            BillableItemStatus.WRITTEN_OFF,
        },
        BillableItemStatus.ON_HOLD: {BillableItemStatus.READY, BillableItemStatus.WRITTEN_OFF},
        # credited: rebill puts it back to ready, write_off closes it
        BillableItemStatus.INVOICED: {BillableItemStatus.READY, BillableItemStatus.WRITTEN_OFF},
        BillableItemStatus.WRITTEN_OFF: set(),
    },
)


@dataclass(slots=True, kw_only=True)
class BillableItem:
    """One priced charge a billing run decided on, before it is invoiced.

    It keeps its sources and a rule trace so every invoiced cent can be
    explained, and an idempotency key so a rerun finds it instead of billing
    the same work twice.
    """

    id: str = field(default_factory=new_id)
    contract_line_id: str
    source_ids: tuple[str, ...] = ()
    service_start: date
    service_end: date
    quantity: Decimal
    unit_price: Money
    amount: Money
    tax_code: str | None = None
    rule_trace: tuple[str, ...] = ()
    idempotency_key: str
    status: BillableItemStatus = BillableItemStatus.PENDING
    invoice_line_id: str | None = None

    def __post_init__(self) -> None:
        record = _label("BillableItem", self.id)
        _check_decimal(self.quantity, record, "quantity")
        _check_money(self.unit_price, self.amount.currency, record, "unit_price")
        _check_period(self.service_start, self.service_end, record, "service_start", "service_end")
        _check_text(self.idempotency_key, record, "idempotency_key")
        _check_set_when(
            self.invoice_line_id,
            self.status,
            BillableItemStatus.INVOICED,
            record,
            "invoice_line_id",
        )

    @property
    def currency(self) -> str:
        return self.amount.currency

    def _move(self, target: BillableItemStatus) -> None:
        self.status = BILLABLE_ITEM_LIFECYCLE.advance(self.status, target)

    def make_ready(self) -> None:
        self._move(BillableItemStatus.READY)

    def hold(self) -> None:
        self._move(BillableItemStatus.ON_HOLD)

    def release(self) -> None:
        if self.status is not BillableItemStatus.ON_HOLD:
            raise RuleViolation(f"billable item {self.id} is {self.status}, not on hold")
        self._move(BillableItemStatus.READY)

    def write_off(self) -> None:
        if self.status is BillableItemStatus.INVOICED:
            raise RuleViolation(f"billable item {self.id} is invoiced; credit it instead")
        self._move(BillableItemStatus.WRITTEN_OFF)

    def mark_invoiced(self, invoice_line_id: str) -> None:
        _check_text(invoice_line_id, _label("BillableItem", self.id), "invoice_line_id")
        self._move(BillableItemStatus.INVOICED)
        self.invoice_line_id = invoice_line_id

    def credit(self, disposition: CreditDisposition) -> None:
        """Undo invoicing: back to ready to rebill, or written off."""
        if self.status is not BillableItemStatus.INVOICED:
            raise RuleViolation(f"billable item {self.id} is {self.status}; nothing to credit")
        if disposition is CreditDisposition.REBILL:
            self._move(BillableItemStatus.READY)
        else:
            self._move(BillableItemStatus.WRITTEN_OFF)
        self.invoice_line_id = None


class AllocationKind(StrEnum):
    PAYMENT = "payment"
    CREDIT = "credit"
    REFUND = "refund"


@dataclass(frozen=True, slots=True)
class Allocation:
    """An amount moved between two documents, and the other document's id.

    On an invoice: a payment or credit that reduced what is due. On a credit
    memo: the part used against an invoice or paid back as a refund.
    """

    kind: AllocationKind
    reference: str
    amount: Money


@dataclass(frozen=True, slots=True, kw_only=True)
class InvoiceLine:
    """One line of an invoice, listing the billable items it bills."""

    id: str = field(default_factory=new_id)
    description: str
    quantity: Decimal
    unit_price: Money
    amount: Money
    tax: Money
    billable_item_ids: tuple[str, ...]
    contract_line_id: str | None = None

    def __post_init__(self) -> None:
        record = _label("InvoiceLine", self.id)
        _check_decimal(self.quantity, record, "quantity")
        currency = self.amount.currency
        _check_money(self.unit_price, currency, record, "unit_price", non_negative=False)
        _check_money(self.tax, currency, record, "tax", non_negative=False)
        _check(bool(self.billable_item_ids), record, "billable_item_ids", "lists no items")

    @property
    def currency(self) -> str:
        return self.amount.currency

    @property
    def gross(self) -> Money:
        return self.amount + self.tax


class InvoiceStatus(StrEnum):
    DRAFT = "draft"
    ISSUED = "issued"
    PARTIALLY_PAID = "partially_paid"
    PAID = "paid"
    VOID = "void"
    UNCOLLECTIBLE = "uncollectible"


INVOICE_LIFECYCLE = Lifecycle(
    "Invoice",
    {
        InvoiceStatus.DRAFT: {InvoiceStatus.ISSUED, InvoiceStatus.VOID},
        InvoiceStatus.ISSUED: {
            InvoiceStatus.PARTIALLY_PAID,
            InvoiceStatus.PAID,
            InvoiceStatus.VOID,
            InvoiceStatus.UNCOLLECTIBLE,
        },
        # back to issued / partially_paid only when a payment is unapplied
        InvoiceStatus.PARTIALLY_PAID: {
            InvoiceStatus.ISSUED,
            InvoiceStatus.PAID,
            InvoiceStatus.UNCOLLECTIBLE,
        },
        InvoiceStatus.PAID: {InvoiceStatus.ISSUED, InvoiceStatus.PARTIALLY_PAID},
        InvoiceStatus.VOID: set(),
        InvoiceStatus.UNCOLLECTIBLE: set(),
    },
)

_OPEN_INVOICE = frozenset({InvoiceStatus.ISSUED, InvoiceStatus.PARTIALLY_PAID})
_CREDITABLE_INVOICE = _OPEN_INVOICE | {InvoiceStatus.PAID}


def _snapshot_of(entity: LegalEntity, bill_to: Account) -> dict[str, str]:
    def tax_ids(ids: tuple[TaxId, ...]) -> str:
        return ", ".join(f"{tax_id.scheme} {tax_id.value}" for tax_id in ids)

    return {
        "entity_id": entity.id,
        "entity_name": entity.name,
        "entity_country": entity.country,
        "entity_tax_ids": tax_ids(entity.tax_ids),
        "customer_id": bill_to.id,
        "customer_legal_name": bill_to.legal_name,
        "customer_tax_ids": tax_ids(bill_to.tax_ids),
        "payment_terms_days": str(bill_to.payment_terms_days),
    }


@dataclass(slots=True, kw_only=True)
class Invoice:
    """A bill to a customer from one of our entities, in one currency.

    It freezes the customer and entity data it was drafted with (``snapshot``),
    because an issued invoice is a legal document that must not change when the
    customer record does. Once issued, only payments and credits touch it.

    ``amount_due`` = gross − payments − credits applied, never negative.
    ``credited`` counts every credit memo raised against it (even on a paid
    invoice, where the credit is refunded rather than reducing what is due);
    it never exceeds gross.
    """

    id: str = field(default_factory=new_id)
    entity_id: str
    bill_to_account_id: str
    currency: str
    snapshot: Mapping[str, str] = field(default_factory=dict)
    lines: tuple[InvoiceLine, ...] = ()
    number: str | None = None
    issue_date: date | None = None
    due_date: date | None = None
    status: InvoiceStatus = InvoiceStatus.DRAFT
    settlements: tuple[Allocation, ...] = ()
    credit_memos: tuple[Allocation, ...] = ()

    def __post_init__(self) -> None:
        record = self._record
        _check_currency(self.currency, record, "currency")
        self.snapshot = MappingProxyType(dict(self.snapshot))
        for line in self.lines:
            self._check_line(line)
        _check_period(self.issue_date, self.due_date, record, "issue_date", "due_date")
        if self.status is not InvoiceStatus.DRAFT:
            _check(bool(self.number), record, "number", "an issued invoice has a number")
        for allocation in (*self.settlements, *self.credit_memos):
            _check_money(allocation.amount, self.currency, record, "settlements")
        _check(self.amount_due.minor >= 0, record, "settlements", "exceed the gross amount")
        _check(self.creditable.minor >= 0, record, "credit_memos", "exceed the gross amount")

    @classmethod
    def draft(
        cls, *, entity: LegalEntity, bill_to: Account, currency: str, id: str | None = None
    ) -> Invoice:
        """Start an invoice, freezing the entity and customer data as they are now."""
        return cls(
            id=id or new_id(),
            entity_id=entity.id,
            bill_to_account_id=bill_to.id,
            currency=currency,
            snapshot=_snapshot_of(entity, bill_to),
        )

    @property
    def _record(self) -> str:
        return _label("Invoice", self.id)

    def _check_line(self, line: InvoiceLine) -> None:
        _check_money(line.amount, self.currency, self._record, "lines", non_negative=False)
        _check(
            all(existing.id != line.id for existing in self.lines if existing is not line),
            self._record,
            "lines",
            f"duplicate line {line.id!r}",
        )

    def _sum(self, amounts: Iterable[Money]) -> Money:
        return Money.sum(amounts, self.currency)

    @property
    def net(self) -> Money:
        return self._sum(line.amount for line in self.lines)

    @property
    def tax(self) -> Money:
        return self._sum(line.tax for line in self.lines)

    @property
    def gross(self) -> Money:
        return self.net + self.tax

    @property
    def paid(self) -> Money:
        return self._sum(a.amount for a in self.settlements if a.kind is AllocationKind.PAYMENT)

    @property
    def credit_applied(self) -> Money:
        return self._sum(a.amount for a in self.settlements if a.kind is AllocationKind.CREDIT)

    @property
    def amount_due(self) -> Money:
        return self.gross - self.paid - self.credit_applied

    @property
    def credited(self) -> Money:
        return self._sum(a.amount for a in self.credit_memos)

    @property
    def creditable(self) -> Money:
        """What credit memos may still credit: gross less credits already raised."""
        return self.gross - self.credited

    @property
    def is_open(self) -> bool:
        return self.status in _OPEN_INVOICE

    def _ensure_draft(self) -> None:
        if self.status is not InvoiceStatus.DRAFT:
            raise RuleViolation(f"invoice {self.number or self.id} is {self.status} and immutable")

    def add_line(self, line: InvoiceLine) -> None:
        self._ensure_draft()
        self._check_line(line)
        self.lines += (line,)

    def issue(self, *, number: str, issue_date: date, due_date: date) -> None:
        self._ensure_draft()
        _check_text(number, self._record, "number")
        _check_period(issue_date, due_date, self._record, "issue_date", "due_date")
        if not self.lines:
            raise RuleViolation(f"invoice {self.id} has no lines")
        if self.gross.minor < 0:
            raise RuleViolation(f"invoice {self.id} totals {self.gross}; raise a credit memo")
        self.status = INVOICE_LIFECYCLE.advance(self.status, InvoiceStatus.ISSUED)
        self.number, self.issue_date, self.due_date = number, issue_date, due_date
        if self.gross.is_zero():
            self.status = INVOICE_LIFECYCLE.advance(self.status, InvoiceStatus.PAID)

    def _settle(self, kind: AllocationKind, amount: Money, reference: str) -> None:
        if not self.is_open:
            raise RuleViolation(f"invoice {self.id} is {self.status}; it takes no {kind}")
        _check_money(amount, self.currency, self._record, kind)
        _check_positive(amount, self._record, kind)
        if any(a.reference == reference for a in self.settlements):
            raise RuleViolation(f"invoice {self.id} already has {reference!r} applied")
        if amount > self.amount_due:
            raise RuleViolation(
                f"{kind} {amount} exceeds the {self.amount_due} due on invoice {self.id}"
            )
        self.settlements += (Allocation(kind, reference, amount),)
        self._follow_balance()

    def _follow_balance(self) -> None:
        if self.amount_due.is_zero():
            target = InvoiceStatus.PAID
        elif self.settlements:
            target = InvoiceStatus.PARTIALLY_PAID
        else:
            target = InvoiceStatus.ISSUED
        if target is not self.status:
            self.status = INVOICE_LIFECYCLE.advance(self.status, target)

    def apply_payment(self, amount: Money, *, reference: str) -> None:
        """Record money received against this invoice (``reference``: its source)."""
        self._settle(AllocationKind.PAYMENT, amount, reference)

    def apply_credit(self, amount: Money, *, reference: str) -> None:
        """Reduce what is due by part of a credit memo (``reference``: the memo)."""
        self._settle(AllocationKind.CREDIT, amount, reference)

    def unapply_payment(self, reference: str) -> None:
        """Take back a payment application (a bounced payment, a mistake)."""
        if not any(
            a.reference == reference and a.kind is AllocationKind.PAYMENT for a in self.settlements
        ):
            raise RuleViolation(f"invoice {self.id} has no payment {reference!r}")
        if self.status not in _CREDITABLE_INVOICE:
            raise RuleViolation(f"invoice {self.id} is {self.status}")
        self.settlements = _without(self.settlements, reference)
        self._follow_balance()

    def register_credit_memo(self, memo_id: str, total: Money) -> None:
        """Count a credit memo against this invoice; refuses to credit beyond gross."""
        if self.status not in _CREDITABLE_INVOICE:
            raise RuleViolation(f"invoice {self.id} is {self.status}; it cannot be credited")
        _check_money(total, self.currency, self._record, "credit_memos")
        _check_positive(total, self._record, "credit_memos")
        if any(a.reference == memo_id for a in self.credit_memos):
            raise RuleViolation(f"credit memo {memo_id} is already registered on {self.id}")
        if total > self.creditable:
            raise RuleViolation(
                f"credit {total} exceeds the {self.creditable} still creditable on {self.id}"
            )
        self.credit_memos += (Allocation(AllocationKind.CREDIT, memo_id, total),)

    def void(self) -> None:
        """Cancel an invoice nobody has paid: a draft, or issued without payments."""
        if self.settlements or self.credit_memos:
            raise RuleViolation(f"invoice {self.id} has payments or credits; credit it instead")
        self.status = INVOICE_LIFECYCLE.advance(self.status, InvoiceStatus.VOID)

    def mark_uncollectible(self) -> None:
        self.status = INVOICE_LIFECYCLE.advance(self.status, InvoiceStatus.UNCOLLECTIBLE)


@dataclass(frozen=True, slots=True, kw_only=True)
class CreditMemoLine:
    """Reverses (part of) one invoice line; says what happens to its work."""

    id: str = field(default_factory=new_id)
    invoice_line_id: str
    description: str = ""
    amount: Money
    tax: Money
    disposition: CreditDisposition
    billable_item_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        record = _label("CreditMemoLine", self.id)
        _check_money(self.amount, self.amount.currency, record, "amount")
        _check_money(self.tax, self.amount.currency, record, "tax")
        _check_positive(self.total, record, "amount")

    @property
    def total(self) -> Money:
        return self.amount + self.tax


class CreditMemoStatus(StrEnum):
    DRAFT = "draft"
    ISSUED = "issued"
    APPLIED = "applied"
    REFUNDED = "refunded"


CREDIT_MEMO_LIFECYCLE = Lifecycle(
    "CreditMemo",
    {
        CreditMemoStatus.DRAFT: {CreditMemoStatus.ISSUED},
        CreditMemoStatus.ISSUED: {CreditMemoStatus.APPLIED, CreditMemoStatus.REFUNDED},
        CreditMemoStatus.APPLIED: set(),
        CreditMemoStatus.REFUNDED: {CreditMemoStatus.ISSUED},  # a refund payout was taken back
    },
)


@dataclass(slots=True, kw_only=True)
class CreditMemo:
    """Reverses part of an issued invoice, for a stated reason.

    On issue it is counted against its invoice (never beyond what is still
    creditable) and applied to what that invoice still owes; any remainder is
    allocated to other invoices or refunded. Each line's disposition tells the
    caller whether to rebill or write off the billable items it lists.
    """

    id: str = field(default_factory=new_id)
    invoice_id: str
    currency: str
    reason: str
    lines: tuple[CreditMemoLine, ...] = ()
    number: str | None = None
    issue_date: date | None = None
    status: CreditMemoStatus = CreditMemoStatus.DRAFT
    allocations: tuple[Allocation, ...] = ()

    def __post_init__(self) -> None:
        record = _label("CreditMemo", self.id)
        _check_currency(self.currency, record, "currency")
        _check_text(self.reason, record, "reason")
        for line in self.lines:
            _check_money(line.amount, self.currency, record, "lines")
        for allocation in self.allocations:
            _check_money(allocation.amount, self.currency, record, "allocations")
        _check(self.unallocated.minor >= 0, record, "allocations", "exceed the memo total")

    @property
    def total(self) -> Money:
        return Money.sum((line.total for line in self.lines), self.currency)

    @property
    def allocated(self) -> Money:
        return Money.sum((a.amount for a in self.allocations), self.currency)

    @property
    def unallocated(self) -> Money:
        return self.total - self.allocated

    def add_line(self, line: CreditMemoLine) -> None:
        if self.status is not CreditMemoStatus.DRAFT:
            raise RuleViolation(f"credit memo {self.id} is {self.status} and immutable")
        _check_money(line.amount, self.currency, _label("CreditMemo", self.id), "lines")
        self.lines += (line,)

    def issue(self, invoice: Invoice, *, number: str, on: date) -> None:
        """Issue against ``invoice``: count it there and apply it to what is due."""
        record = _label("CreditMemo", self.id)
        _check(invoice.id == self.invoice_id, record, "invoice_id", f"is not {invoice.id}")
        _check(invoice.currency == self.currency, record, "currency", "differs from the invoice")
        _check_text(number, record, "number")
        if not self.lines:
            raise RuleViolation(f"credit memo {self.id} has no lines")
        invoice_lines = {line.id: line for line in invoice.lines}
        for line in self.lines:
            if line.invoice_line_id not in invoice_lines:
                raise RuleViolation(
                    f"credit memo line {line.id} credits {line.invoice_line_id!r}, "
                    f"which is not a line of invoice {invoice.id}"
                )
        # checked before the invoice is touched, so a refused issue changes nothing
        CREDIT_MEMO_LIFECYCLE.advance(self.status, CreditMemoStatus.ISSUED)
        invoice.register_credit_memo(self.id, self.total)
        self.status = CreditMemoStatus.ISSUED
        self.number, self.issue_date = number, on
        if invoice.is_open:
            self.allocate(invoice, min(self.total, invoice.amount_due))

    def allocate(self, invoice: Invoice, amount: Money) -> None:
        """Use ``amount`` of this credit against what ``invoice`` still owes."""
        self._use(AllocationKind.CREDIT, invoice.id, amount)
        invoice.apply_credit(amount, reference=self.id)
        self._record_use(AllocationKind.CREDIT, invoice.id, amount)

    def refund(self, amount: Money, *, reference: str) -> None:
        """Pay ``amount`` of the credit back to the customer (``reference``: the payout)."""
        self._use(AllocationKind.REFUND, reference, amount)
        self._record_use(AllocationKind.REFUND, reference, amount)

    def cancel_refund(self, reference: str) -> None:
        """Take back a refund payout (it bounced); the credit is available again."""
        if not any(
            a.reference == reference and a.kind is AllocationKind.REFUND for a in self.allocations
        ):
            raise RuleViolation(f"credit memo {self.id} has no refund {reference!r} to cancel")
        self.allocations = _without(self.allocations, reference)
        if self.status is not CreditMemoStatus.ISSUED:
            self.status = CREDIT_MEMO_LIFECYCLE.advance(self.status, CreditMemoStatus.ISSUED)

    def _use(self, kind: AllocationKind, reference: str, amount: Money) -> None:
        if self.status is not CreditMemoStatus.ISSUED:
            raise RuleViolation(f"credit memo {self.id} is {self.status}; nothing to {kind}")
        record = _label("CreditMemo", self.id)
        _check_money(amount, self.currency, record, "allocations")
        _check_positive(amount, record, "allocations")
        if amount > self.unallocated:
            raise RuleViolation(
                f"{kind} {amount} exceeds the {self.unallocated} left on credit memo {self.id}"
            )
        if any(a.reference == reference and a.kind is kind for a in self.allocations):
            raise RuleViolation(f"credit memo {self.id} already has a {kind} to {reference!r}")

    def _record_use(self, kind: AllocationKind, reference: str, amount: Money) -> None:
        self.allocations += (Allocation(kind, reference, amount),)
        if self.unallocated.is_zero():
            refunded = any(a.kind is AllocationKind.REFUND for a in self.allocations)
            final = CreditMemoStatus.REFUNDED if refunded else CreditMemoStatus.APPLIED
            self.status = CREDIT_MEMO_LIFECYCLE.advance(self.status, final)


class PaymentMethod(StrEnum):
    BANK_TRANSFER = "bank_transfer"
    CARD = "card"
    DIRECT_DEBIT = "direct_debit"
    CHEQUE = "cheque"
    OTHER = "other"


class PaymentStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    APPLIED = "applied"
    REFUNDED = "refunded"
    REVERSED = "reversed"


PAYMENT_LIFECYCLE = Lifecycle(
    "Payment",
    {
        PaymentStatus.PENDING: {PaymentStatus.SUCCEEDED, PaymentStatus.FAILED},
        PaymentStatus.SUCCEEDED: {
            PaymentStatus.APPLIED,
            PaymentStatus.REFUNDED,
            PaymentStatus.REVERSED,
        },
        PaymentStatus.APPLIED: {PaymentStatus.SUCCEEDED},  # an application was taken back
        PaymentStatus.FAILED: set(),
        PaymentStatus.REFUNDED: set(),
        PaymentStatus.REVERSED: set(),
    },
)


class ApplicationTarget(StrEnum):
    INVOICE = "invoice"
    CREDIT_MEMO = "credit_memo"
    """A payout settling a credit memo's unallocated balance (a refund)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentApplication:
    """The link from a payment to the document it settles."""

    id: str = field(default_factory=new_id)
    payment_id: str
    target: ApplicationTarget
    target_id: str
    amount: Money
    applied_on: date


@dataclass(slots=True, kw_only=True)
class Payment:
    """Money that moved between a customer and us.

    Only a succeeded payment can be applied, never beyond its amount and only
    to documents in its currency; what is not applied yet is ``unapplied``.
    It becomes ``applied`` when nothing is left. Refunds and reversals act on
    the whole payment, so applications must be taken back first.
    """

    id: str = field(default_factory=new_id)
    account_id: str
    amount: Money
    received_on: date
    method: PaymentMethod = PaymentMethod.BANK_TRANSFER
    reference: str = ""
    status: PaymentStatus = PaymentStatus.PENDING
    applications: tuple[PaymentApplication, ...] = ()

    def __post_init__(self) -> None:
        record = _label("Payment", self.id)
        _check_positive(self.amount, record, "amount")
        for application in self.applications:
            _check_money(application.amount, self.currency, record, "applications")
        _check(self.unapplied.minor >= 0, record, "applications", "exceed the payment amount")

    @property
    def currency(self) -> str:
        return self.amount.currency

    @property
    def applied(self) -> Money:
        return Money.sum((a.amount for a in self.applications), self.currency)

    @property
    def unapplied(self) -> Money:
        return self.amount - self.applied

    def succeed(self) -> None:
        self.status = PAYMENT_LIFECYCLE.advance(self.status, PaymentStatus.SUCCEEDED)

    def fail(self) -> None:
        self.status = PAYMENT_LIFECYCLE.advance(self.status, PaymentStatus.FAILED)

    def apply_to(
        self, document: Invoice | CreditMemo, amount: Money, *, on: date
    ) -> PaymentApplication:
        """Settle ``amount`` of ``document`` with this payment.

        Both sides are checked before either changes, so a refused application
        leaves payment and document as they were.
        """
        if self.status is not PaymentStatus.SUCCEEDED:
            raise RuleViolation(f"payment {self.id} is {self.status}; it cannot be applied")
        record = _label("Payment", self.id)
        _check_money(amount, self.currency, record, "amount")
        _check(document.currency == self.currency, record, "currency", "differs from document")
        _check_positive(amount, record, "amount")
        if amount > self.unapplied:
            raise RuleViolation(
                f"applying {amount} exceeds the {self.unapplied} unapplied on payment {self.id}"
            )
        application = PaymentApplication(
            payment_id=self.id,
            target=(
                ApplicationTarget.INVOICE
                if isinstance(document, Invoice)
                else ApplicationTarget.CREDIT_MEMO
            ),
            target_id=document.id,
            amount=amount,
            applied_on=on,
        )
        if isinstance(document, Invoice):
            document.apply_payment(amount, reference=application.id)
        else:
            document.refund(amount, reference=application.id)
        self.applications += (application,)
        if self.unapplied.is_zero():
            self.status = PAYMENT_LIFECYCLE.advance(self.status, PaymentStatus.APPLIED)
        return application

    def unapply(self, application_id: str, document: Invoice | CreditMemo) -> None:
        """Take an application back from ``document``; the money is unapplied again."""
        application = next((a for a in self.applications if a.id == application_id), None)
        if application is None or application.target_id != document.id:
            raise RuleViolation(
                f"payment {self.id} has no application {application_id!r} on {document.id}"
            )
        if isinstance(document, Invoice):
            document.unapply_payment(application.id)
        else:
            document.cancel_refund(application.id)
        self.applications = tuple(a for a in self.applications if a.id != application_id)
        if self.status is PaymentStatus.APPLIED:
            self.status = PAYMENT_LIFECYCLE.advance(self.status, PaymentStatus.SUCCEEDED)

    def _return(self, target: PaymentStatus) -> None:
        if self.applications:
            raise RuleViolation(f"payment {self.id} is applied; unapply it before {target}")
        self.status = PAYMENT_LIFECYCLE.advance(self.status, target)

    def refund(self) -> None:
        """We sent the whole payment back."""
        self._return(PaymentStatus.REFUNDED)

    def reverse(self) -> None:
        """The bank took the payment back (bounced, charged back)."""
        self._return(PaymentStatus.REVERSED)


# -- revenue, FX, tax, adjustments --------------------------------------------------


class RevenueLineStatus(StrEnum):
    PLANNED = "planned"
    RECOGNISED = "recognised"


REVENUE_LINE_LIFECYCLE = Lifecycle(
    "RevenueLine",
    {
        RevenueLineStatus.PLANNED: {RevenueLineStatus.RECOGNISED},
        RevenueLineStatus.RECOGNISED: set(),
    },
)


@dataclass(slots=True, kw_only=True)
class RevenueLine:
    """Revenue planned for one period; recognised once, then history."""

    id: str = field(default_factory=new_id)
    period_start: date
    period_end: date
    amount: Money
    status: RevenueLineStatus = RevenueLineStatus.PLANNED
    recognised_on: date | None = None

    def __post_init__(self) -> None:
        record = _label("RevenueLine", self.id)
        _check_period(self.period_start, self.period_end, record, "period_start", "period_end")
        _check_money(self.amount, self.amount.currency, record, "amount", non_negative=False)

    def recognise(self, on: date) -> None:
        self.status = REVENUE_LINE_LIFECYCLE.advance(self.status, RevenueLineStatus.RECOGNISED)
        self.recognised_on = on


@dataclass(slots=True, kw_only=True)
class RevenueSchedule:
    """How a contract line's transaction price is earned over time.

    Periods never overlap and the planned total never exceeds the
    transaction price: revenue is recognised at most once.
    """

    id: str = field(default_factory=new_id)
    contract_line_id: str
    method: RevenueMethod
    transaction_price: Money
    lines: tuple[RevenueLine, ...] = ()

    def __post_init__(self) -> None:
        _check_money(
            self.transaction_price, self.currency, _label("RevenueSchedule", self.id), "price"
        )
        lines, self.lines = self.lines, ()
        for line in lines:
            self.add_line(line)

    @property
    def currency(self) -> str:
        return self.transaction_price.currency

    @property
    def planned_total(self) -> Money:
        return Money.sum((line.amount for line in self.lines), self.currency)

    @property
    def recognised(self) -> Money:
        done = (line.amount for line in self.lines if line.status is RevenueLineStatus.RECOGNISED)
        return Money.sum(done, self.currency)

    def add_line(self, line: RevenueLine) -> None:
        record = _label("RevenueSchedule", self.id)
        _check_money(line.amount, self.currency, record, "lines", non_negative=False)
        for other in self.lines:
            if line.period_start <= other.period_end and other.period_start <= line.period_end:
                raise RuleViolation(f"revenue line {line.id} overlaps {other.id} on {self.id}")
        if self.planned_total + line.amount > self.transaction_price:
            raise RuleViolation(
                f"revenue schedule {self.id} would plan more than its price "
                f"{self.transaction_price}"
            )
        self.lines += (line,)

    def recognise(self, line_id: str, on: date) -> None:
        for line in self.lines:
            if line.id == line_id:
                line.recognise(on)
                return
        raise InvalidInput(f"no line {line_id!r}", record=_label("RevenueSchedule", self.id))


@dataclass(frozen=True, slots=True, kw_only=True)
class FxRate:
    """1 unit of ``from_currency`` = ``rate`` units of ``to_currency`` on a date.

    Immutable: a corrected rate is a new record, so past conversions can be
    reproduced exactly.
    """

    from_currency: str
    to_currency: str
    rate: Decimal
    rate_date: date
    source: str = "manual"

    def __post_init__(self) -> None:
        record = f"FxRate[{self.from_currency}/{self.to_currency}@{self.rate_date}]"
        _check_currency(self.from_currency, record, "from_currency")
        _check_currency(self.to_currency, record, "to_currency")
        _check(self.from_currency != self.to_currency, record, "to_currency", "same currency")
        _check_decimal(self.rate, record, "rate")
        _check(self.rate > 0, record, "rate", "must be positive")

    def convert(self, amount: Money) -> Money:
        """Convert, rounding half-up to the target currency's minor unit."""
        _check(
            amount.currency == self.from_currency,
            f"FxRate[{self.from_currency}/{self.to_currency}]",
            "from_currency",
            f"cannot convert {amount.currency}",
        )
        return amount.convert(self.rate, self.to_currency)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaxRule(EffectiveDated):
    """One versioned line of tax policy: who sells what to whom, and the rate.

    ``None`` in a matching field means "any". ``rate`` is a fraction (0.20 is
    20 %). A reverse-charge rule charges no tax; the customer accounts for it
    and the invoice carries the ``legend``.
    """

    id: str = field(default_factory=new_id)
    version: int = 1
    seller_entity_id: str | None = None
    seller_country: str
    buyer_country: str | None = None
    buyer_region: str | None = None
    business: bool | None = None
    product_tax_category: str | None = None
    rate: Decimal = _ZERO
    reverse_charge: bool = False
    legend: str | None = None
    valid_from: date | None = None
    valid_to: date | None = None

    def __post_init__(self) -> None:
        record = _label("TaxRule", self.id)
        _check(self.version >= 1, record, "version", "starts at 1")
        _check_country(self.seller_country, record, "seller_country")
        if self.buyer_country is not None:
            _check_country(self.buyer_country, record, "buyer_country")
        _check_decimal(self.rate, record, "rate", maximum=Decimal(1))
        if self.reverse_charge:
            _check(self.rate == 0, record, "rate", "a reverse-charge rule charges no tax")
        _check_period(self.valid_from, self.valid_to, record)


class AdjustmentKind(StrEnum):
    WRITE_DOWN = "write_down"
    """Bill less than the work is worth, before invoicing."""
    WRITE_UP = "write_up"
    """Bill more than the standard value, before invoicing."""
    WRITE_OFF = "write_off"
    """Give up on an amount, typically after invoicing."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Adjustment:
    """A deliberate change to billable value, with who approved it and why.

    The reason code is mandatory: write-offs without one count as revenue
    leakage, and realisation reports group by it.
    """

    id: str = field(default_factory=new_id)
    kind: AdjustmentKind
    target_id: str
    amount: Money
    reason_code: str
    approved_by: str
    adjusted_on: date
    note: str = ""

    def __post_init__(self) -> None:
        record = _label("Adjustment", self.id)
        _check_positive(self.amount, record, "amount")
        _check_text(self.reason_code, record, "reason_code")
        _check_text(self.approved_by, record, "approved_by")
        _check_text(self.target_id, record, "target_id")

    @property
    def signed_amount(self) -> Money:
        """The change to billable value: positive for write-ups, negative otherwise."""
        return self.amount if self.kind is AdjustmentKind.WRITE_UP else -self.amount
