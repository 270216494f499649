"""The consulting firm's month, seeded into the vendor stand-ins from the billing world.

``examples/consulting-month.yaml`` is the firm: a US and a UK entity, customers
in the US, the UK and Germany, contracts with a capped time-and-materials line,
fixed-fee milestones and a managed-service retainer, in USD, GBP and EUR. This
module adds what the billing file does not hold — legal names, web domains,
e-mail addresses, the won opportunities — as :class:`Facts`, and plays the
outside world: sales closing deals in Salesforce, consultants logging and
approving time and expenses in Harvest, customers accepting milestones and
paying their invoices in Stripe.

What the outside world does goes straight to the stand-ins (in-process, or over
their HTTP APIs as a customer would); everything Accord does goes through the
connectors and the effect ledger. Conventions where a vendor lacks a field:

* Salesforce carries the customer's tax id in ``AccountNumber`` and the
  opportunity's contract in its ``Accord_Id__c`` (``opp-<contract>``).
* Harvest records an expense in its client's currency; a receipt in another
  currency carries its code in the notes as ``[currency:GBP]``.
* Harvest has no milestones: acceptance is recorded in the hub as a ``milestone``
  record from the PSA side.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from accord.billing.model import BillingWorld, RateCard, RateEntry
from accord.billing.scenario import load_scenario

__all__ = [
    "DEFAULT_SCENARIO",
    "AccountFacts",
    "Amendment",
    "Facts",
    "OpportunityFacts",
    "default_facts",
    "load_world",
    "pre_amendment_world",
]

DEFAULT_SCENARIO = Path(__file__).resolve().parents[4] / "examples" / "consulting-month.yaml"


@dataclass(frozen=True, slots=True)
class AccountFacts:
    id: str
    legal_name: str
    domain: str | None
    tax_id: str | None
    country: str
    currency: str


@dataclass(frozen=True, slots=True)
class OpportunityFacts:
    id: str
    """Canonical opportunity id, carried in Salesforce's ``Accord_Id__c``."""
    account: str
    name: str
    contract: str | None
    close_date: date
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Amendment:
    """A contract amendment: a role's rate on a rate card changes from a date."""

    contract: str
    rate_card: str
    role: str
    rate: Decimal
    effective: date


@dataclass(frozen=True, slots=True)
class Facts:
    accounts: tuple[AccountFacts, ...]
    opportunities: tuple[OpportunityFacts, ...]
    erp_customers: tuple[AccountFacts, ...]
    """Customers the ERP already has before the month starts."""
    people: Mapping[str, tuple[str, str]]
    """Person id → (first name, last name); e-mail ``<id>@consulting.example``."""
    amendment: Amendment
    payment_date: date
    settlement_rates: Mapping[tuple[str, str], Decimal]
    """(from, to) → rate on the payment date, for realised FX."""
    credit_memo: Mapping[str, Any] = field(default_factory=dict)
    """The month's one credit memo: contract, contract line kind, reason."""

    def email(self, person: str) -> str:
        return f"{person}@consulting.example"

    def person_of(self, email: str | None) -> str | None:
        local = (email or "").split("@", 1)[0]
        return local if local in self.people else None


def default_facts() -> Facts:
    """The firm's customers and deals, plus one near-duplicate account in the CRM."""
    accounts = (
        AccountFacts(
            "northwind", "Northwind Analytics Inc.", "northwind.example", "12-3456789", "US", "USD"
        ),
        AccountFacts(
            "brightline", "Brightline Partners Ltd", "brightline.example", "GB123456789", "GB",
            "GBP",
        ),
        AccountFacts(
            "kraftwerk", "Kraftwerk Maschinenbau GmbH", "kraftwerk.example", "DE123456789", "DE",
            "EUR",
        ),
        # entered again by another rep: no tax id, no web site, a variant of the name
        AccountFacts("bright-line-group", "Bright Line Partners Group", None, None, "GB", "GBP"),
    )  # fmt: skip
    opportunities = (
        OpportunityFacts(
            "opp-nw-2026", "northwind", "Northwind data platform", "nw-2026",
            date(2026, 2, 20), Decimal("20000.00"),
        ),
        OpportunityFacts(
            "opp-bl-2026", "brightline", "Brightline build and run", "bl-2026",
            date(2026, 2, 24), Decimal("108000.00"),
        ),
        OpportunityFacts(
            "opp-kw-2026", "kraftwerk", "Kraftwerk audit", "kw-2026",
            date(2026, 2, 26), Decimal("15000.00"),
        ),
        OpportunityFacts(
            "opp-blg-2026", "bright-line-group", "Bright Line workshop", None,
            date(2026, 2, 27), Decimal("4000.00"),
        ),
    )  # fmt: skip
    erp = (
        AccountFacts(
            "brightline",
            "Brightline Partners Ltd",
            "brightline.example",
            "GB123456789",
            "GB",
            "GBP",
        ),
    )
    return Facts(
        accounts=accounts,
        opportunities=opportunities,
        erp_customers=erp,
        people={"alice": ("Alice", "Hart"), "bob": ("Bob", "Reyes"), "chen": ("Chen", "Wu")},
        amendment=Amendment("kw-2026", "gbp-2026", "senior", Decimal("170.00"), date(2026, 3, 16)),
        payment_date=date(2026, 4, 20),
        settlement_rates={
            ("EUR", "GBP"): Decimal("0.86"),
            ("USD", "USD"): Decimal(1),
            ("GBP", "GBP"): Decimal(1),
        },
        credit_memo={"contract": "bl-2026", "kind": "managed_overage", "reason": "order_change"},
    )


def load_world(path: Path | None = None) -> BillingWorld:
    return load_scenario(path or DEFAULT_SCENARIO)


def pre_amendment_world(world: BillingWorld, amendment: Amendment) -> BillingWorld:
    """The world as the deal was signed: the rate card without the amendment.

    The entry the amendment adds (the role's rate from the effective date) is
    removed and the entry it closed (valid to the day before) is reopened;
    :func:`accord.q2c.amendment.amend_rate_card` applied to the result gives
    the world back.
    """
    card = world.rate_cards[amendment.rate_card]
    closing = amendment.effective - timedelta(days=1)
    kept: list[RateEntry] = []
    for entry in card.entries:
        if entry.role == amendment.role and entry.valid_from == amendment.effective:
            continue
        if entry.role == amendment.role and entry.valid_to == closing:
            entry = dataclasses.replace(entry, valid_to=None)
        kept.append(entry)
    cards = {
        **world.rate_cards,
        card.id: RateCard(card.id, card.currency, tuple(kept)),
    }
    return dataclasses.replace(world, rate_cards=cards)


# -- the outside world ------------------------------------------------------------------------


def seed_crm(salesforce: Any, facts: Facts) -> dict[str, str]:
    """Accounts and won opportunities in the Salesforce stand-in; opportunity id → Salesforce Id."""
    account_ids: dict[str, str] = {}
    for account in facts.accounts:
        values: dict[str, Any] = {
            "Name": account.legal_name,
            "BillingCountry": account.country,
            "CurrencyIsoCode": account.currency,
        }
        if account.domain:
            values["Website"] = account.domain
        if account.tax_id:
            values["AccountNumber"] = account.tax_id
        account_ids[account.id] = str(salesforce.create("Account", values)["Id"])
    opportunities: dict[str, str] = {}
    for opp in facts.opportunities:
        row = salesforce.create(
            "Opportunity",
            {
                "AccountId": account_ids[opp.account],
                "Name": opp.name,
                "StageName": "Closed Won",
                "CloseDate": opp.close_date.isoformat(),
                "Amount": float(opp.amount),
                "CurrencyIsoCode": next(a.currency for a in facts.accounts if a.id == opp.account),
                "Probability": 100,
                "Accord_Id__c": opp.id,
            },
        )
        opportunities[opp.id] = str(row["Id"])
    return opportunities


def seed_psa_reference(harvest: Any, facts: Facts) -> None:
    """People, tasks and an expense category in the Harvest stand-in (the PSA's own setup)."""
    for person, (first, last) in facts.people.items():
        harvest.create(
            "users", {"first_name": first, "last_name": last, "email": facts.email(person)}
        )
    harvest.create("tasks", {"name": "Billable work", "billable_by_default": True})
    harvest.create("tasks", {"name": "Internal", "billable_by_default": False})
    harvest.create("expense_categories", {"name": "Travel"})
    harvest.create("expense_categories", {"name": "Meals"})


def _by(rows: list[dict[str, Any]], key: str) -> dict[Any, dict[str, Any]]:
    return {row[key]: row for row in rows}


def log_work(harvest: Any, world: BillingWorld, facts: Facts) -> dict[str, int]:
    """Consultants log the month's time and expenses on the provisioned projects; approved
    ones are approved (Harvest's Timesheet Approval). Idempotent: an entry already logged
    (same project, person, day and notes) is not logged again. Returns counts."""
    projects = {row["code"]: row for row in harvest.records("projects")}
    users = {row["email"]: row for row in harvest.records("users")}
    tasks = _by(harvest.records("tasks"), "name")
    categories = _by(harvest.records("expense_categories"), "name")
    seen_time = {
        (r["project"]["id"], r["user"]["id"], r["spent_date"], r["notes"])
        for r in harvest.records("time_entries")
    }
    seen_expenses = {
        (r["project"]["id"], r["user"]["id"], r["spent_date"], r["notes"])
        for r in harvest.records("expenses")
    }
    made = {"time_entries": 0, "expenses": 0}
    for entry in world.time_entries:
        project = projects.get(entry.project)
        if project is None:
            continue  # the project was never provisioned (its deal is held)
        user = users[facts.email(entry.person)]
        # Harvest takes at most 24 hours in one entry: a longer day is logged in parts
        parts: list[Decimal] = []
        left = entry.hours
        while left > 0:
            parts.append(min(left, Decimal(24)))
            left -= parts[-1]
        for number, hours in enumerate(parts, 1):
            notes = f"Work on {entry.project} ({entry.id})"
            if len(parts) > 1:
                notes += f" part {number}"
            if (project["id"], user["id"], entry.date.isoformat(), notes) in seen_time:
                continue
            row = harvest.create(
                "time_entries",
                {
                    "project_id": project["id"],
                    "task_id": tasks["Billable work" if entry.billable else "Internal"]["id"],
                    "user_id": user["id"],
                    "spent_date": entry.date.isoformat(),
                    "hours": float(hours),
                    "notes": notes,
                },
            )
            made["time_entries"] += 1
            if entry.status == "approved":
                harvest.approve("time_entries", int(row["id"]))
    for expense in world.expenses:
        project = projects.get(expense.project)
        if project is None:
            continue
        user = users[facts.email(expense.person)]
        client_currency = project["client"]["currency"]
        notes = f"{(expense.category or 'expense').title()} ({expense.id})"
        if expense.currency != client_currency:
            notes += f" [currency:{expense.currency}]"
        if (project["id"], user["id"], expense.date.isoformat(), notes) in seen_expenses:
            continue
        category = categories.get((expense.category or "travel").title(), categories["Travel"])
        row = harvest.create(
            "expenses",
            {
                "project_id": project["id"],
                "user_id": user["id"],
                "expense_category_id": category["id"],
                "spent_date": expense.date.isoformat(),
                "total_cost": float(expense.amount),
                "billable": expense.billable,
                "notes": notes,
            },
        )
        made["expenses"] += 1
        if expense.status == "approved":
            harvest.approve("expenses", int(row["id"]))
    return made


def customers_pay(stripe_url: str, api_key: str, *, exclude: tuple[str, ...] = ()) -> int:
    """Every customer pays its open Stripe invoices by card, as a customer would (over HTTP).

    Each confirmation carries its own idempotency key, so paying again pays nothing twice.
    """
    headers = {"Authorization": f"Bearer {api_key}"}
    paid = 0
    with httpx.Client(base_url=stripe_url, headers=headers, timeout=10.0) as client:
        invoices = client.get("/v1/invoices", params={"limit": 100}).json()["data"]
        for invoice in invoices:
            if invoice["status"] != "open" or not invoice.get("payment_intent"):
                continue
            if invoice.get("customer") in exclude:
                continue
            intent = invoice["payment_intent"]
            answer = client.post(
                f"/v1/payment_intents/{intent}/confirm",
                data={"payment_method": "pm_card_visa"},
                headers={"Idempotency-Key": f"customer-pays-{intent}"},
            )
            answer.raise_for_status()
            paid += 1
    return paid
