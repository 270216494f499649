"""Invoices, payments and credit memos, Stripe ⇄ NetSuite, through the connectors and stand-ins.

One book of records is seeded into both stand-ins with drift of every class
each pair can hold; the runs configured in ``accord.yaml`` find all of it and
nothing else, money compared to the cent (tax too), totals per account, period
and currency reported. Under the default policy money is finance's to fix:
every fix becomes an exception item, nothing is written to either vendor, and a
second run finds the same drift without opening new items.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import Engine, select

from accord.config import Settings, parse_settings
from accord.connectors.stripe.connector import encode_form
from accord.ownership import OwnershipPolicy, parse_policy
from accord.reconcile.connect import payment_key
from accord.reconcile.schedule import run_configured
from accord.sandbox.netsuite import NetSuiteStandIn
from accord.sandbox.stripe import StripeStandIn
from accord.store import make_engine, upgrade
from accord.store.tables import effects as effect_ledger
from accord.store.tables import exceptions as exception_items

ISSUED = datetime(2025, 3, 10, 12, tzinfo=UTC)
DAY = ISSUED.date().isoformat()
KEY = "sk_test_reconcile"

POLICY: dict[str, Any] = {
    "ownership": {
        "systems": {"crm": "salesforce", "psa": "harvest", "erp": "netsuite", "billing": "stripe"},
        # as the shipped policy says: billing owns money records, and a person fixes them
        "invoice": {"owner": "billing", "mode": "review"},
        "payment": {"owner": "billing", "mode": "review"},
        "credit_memo": {"owner": "billing", "mode": "review"},
    }
}


@pytest.fixture
def stripe() -> Iterator[StripeStandIn]:
    with StripeStandIn(api_key=KEY, rate_limit=None, clock=ISSUED.timestamp, seed=3) as stand_in:
        yield stand_in


@pytest.fixture
def netsuite() -> Iterator[NetSuiteStandIn]:
    with NetSuiteStandIn(seed=3) as stand_in:
        yield stand_in


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    made = make_engine(f"sqlite:///{tmp_path / 'accord.db'}")
    upgrade(made)
    yield made
    made.dispose()


@pytest.fixture
def policy() -> OwnershipPolicy:
    return parse_policy(POLICY, source="test")


def _settings(
    stripe: StripeStandIn, netsuite: NetSuiteStandIn, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    monkeypatch.setenv("TEST_STRIPE_KEY", KEY)
    for name, value in netsuite.credentials.items():
        monkeypatch.setenv(f"TEST_NS_{name.upper()}", value)
    ns_env = "".join(
        f"\n      {name}: TEST_NS_{name.upper()}" for name in sorted(netsuite.credentials)
    )
    sources = "".join(
        f"\n    {pair}:\n      left: {{system: stripe}}\n      right: {{system: netsuite}}"
        for pair in ("invoices", "payments", "credit_memos")
    )
    return parse_settings(
        f"""
systems:
  stripe:
    role: billing
    connector: stripe
    base_url: {stripe.url}
    token_env: TEST_STRIPE_KEY
  netsuite:
    role: erp
    connector: netsuite
    base_url: {netsuite.url}
    credentials_env:{ns_env}
reconcile:
  pairs: [invoices, payments, credit_memos]
  sources:{sources}
"""
    )


class _Books:
    """Seeds both stand-ins: Stripe over its HTTP API, NetSuite through its state."""

    def __init__(self, stripe: StripeStandIn, netsuite: NetSuiteStandIn) -> None:
        self.http = httpx.Client(base_url=stripe.url, auth=(KEY, ""))
        self.netsuite = netsuite
        self.customers: dict[str, str] = {}
        self.ns_customers: dict[str, str] = {}
        self.invoices: dict[str, dict[str, Any]] = {}
        self.ns_invoices: dict[str, str] = {}

    def post(self, path: str, **params: Any) -> dict[str, Any]:
        response = self.http.post(
            path,
            content=urlencode(encode_form(params)).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def customer(self, key: str) -> None:
        made = self.post("/v1/customers", name=key.upper(), metadata={"accord_id": key})
        self.customers[key] = made["id"]
        row = self.netsuite.create(
            "customer",
            {"companyName": key.upper(), "subsidiary": {"id": "1"}, "currency": {"id": "4"}},
            key,
        )
        self.ns_customers[key] = row["id"]

    def stripe_invoice(self, key: str, account: str, cents: int, *, paid: bool = False) -> str:
        customer = self.customers[account]
        self.post("/v1/invoiceitems", customer=customer, amount=cents, currency="eur")
        draft = self.post(
            "/v1/invoices",
            customer=customer,
            currency="eur",
            collection_method="send_invoice",
            days_until_due=30,
            pending_invoice_items_behavior="include",
            metadata={"accord_id": key},
        )
        invoice = self.post(f"/v1/invoices/{draft['id']}/finalize")
        if paid:
            self.post(
                f"/v1/payment_intents/{invoice['payment_intent']}/confirm",
                payment_method="pm_card_visa",
            )
        self.invoices[key] = invoice
        return str(invoice["number"])

    def ns_invoice(
        self,
        key: str,
        account: str,
        amount: str,
        *,
        number: str,
        tax: str | None = None,
    ) -> None:
        line: dict[str, Any] = {"item": {"id": "1"}, "amount": Decimal(amount)}
        if tax is not None:
            line["tax1Amt"] = Decimal(tax)
        row = self.netsuite.create(
            "invoice",
            {
                "entity": {"id": self.ns_customers[account]},
                "otherRefNum": number,
                "tranDate": DAY,
                "item": {"items": [line]},
            },
            key,
        )
        self.ns_invoices[key] = row["id"]

    def ns_payment(
        self, external: str, account: str, amount: str, *, applies: dict[str, str] | None = None
    ) -> None:
        body: dict[str, Any] = {
            "customer": {"id": self.ns_customers[account]},
            "payment": Decimal(amount),
            "tranDate": DAY,
        }
        if applies:
            body["apply"] = {
                "items": [
                    {"doc": {"id": self.ns_invoices[k]}, "apply": True, "amount": Decimal(v)}
                    for k, v in applies.items()
                ]
            }
        self.netsuite.create("customerPayment", body, external)

    def paid(self, key: str) -> str:
        """The canonical id of the payment of Stripe invoice ``key``."""
        return payment_key(str(self.invoices[key]["id"]))

    def stripe_credit(self, key: str, invoice: str, cents: int) -> None:
        self.post(
            "/v1/credit_notes",
            invoice=self.invoices[invoice]["id"],
            amount=cents,
            credit_amount=cents,
            metadata={"accord_id": key},
        )

    def ns_credit(self, key: str, account: str, amount: str, invoice: str | None) -> None:
        body: dict[str, Any] = {
            "entity": {"id": self.ns_customers[account]},
            "tranDate": DAY,
            "memo": "credit",
            "item": {"items": [{"item": {"id": "1"}, "amount": Decimal(amount)}]},
        }
        if invoice is not None:
            body["createdFrom"] = {"id": self.ns_invoices[invoice]}
        self.netsuite.create("creditMemo", body, key)


def _seed(stripe: StripeStandIn, netsuite: NetSuiteStandIn) -> _Books:
    books = _Books(stripe, netsuite)
    with books.http:
        _seed_books(books)
    return books


def _seed_books(books: _Books) -> None:
    for account in ("acc-1", "acc-2"):
        books.customer(account)
    # invoices
    number = books.stripe_invoice("inv-1", "acc-1", 100_00)  # agrees
    books.ns_invoice("inv-1", "acc-1", "100.00", number=number)
    number = books.stripe_invoice("inv-2", "acc-1", 250_00)  # one cent more in the ERP
    books.ns_invoice("inv-2", "acc-1", "250.01", number=number)
    number = books.stripe_invoice("inv-3", "acc-1", 120_00)  # the ERP split 20.00 out as tax
    books.ns_invoice("inv-3", "acc-1", "100.00", number=number, tax="20.00")
    number = books.stripe_invoice("inv-4", "acc-2", 80_00, paid=True)  # payment never posted
    books.ns_invoice("inv-4", "acc-2", "80.00", number=number)
    books.stripe_invoice("inv-5", "acc-2", 60_00)  # number typed by hand in the ERP
    books.ns_invoice("inv-5", "acc-2", "60.00", number="HAND-1")
    books.stripe_invoice("inv-6", "acc-1", 30_00)  # never reached the ERP
    books.ns_invoice("inv-9", "acc-1", "10.00", number="STRAY-1")  # nothing bills it
    # payments: inv-7 agrees, inv-8 is posted a cent high, inv-10 to the wrong customer
    for key, account, cents in (("inv-7", "acc-1", 40_00), ("inv-8", "acc-2", 50_00)):
        number = books.stripe_invoice(key, account, cents, paid=True)
        books.ns_invoice(key, account, f"{Decimal(cents) / 100:.2f}", number=number)
    number = books.stripe_invoice("inv-10", "acc-2", 70_00, paid=True)
    books.ns_invoice("inv-10", "acc-2", "70.00", number=number)
    books.ns_payment(books.paid("inv-7"), "acc-1", "40.00", applies={"inv-7": "40.00"})
    books.ns_payment(books.paid("inv-8"), "acc-2", "50.01", applies={"inv-8": "50.00"})
    books.ns_payment(books.paid("inv-10"), "acc-1", "70.00", applies={"inv-10": "70.00"})
    books.ns_payment("pay-stray", "acc-1", "5.00")
    # credit memos, after payment (so no invoice's amount due moves)
    books.stripe_credit("cm-1", "inv-7", 10_00)  # agrees
    books.ns_credit("cm-1", "acc-1", "10.00", "inv-7")
    books.stripe_credit("cm-2", "inv-7", 5_00)  # a cent more in the ERP
    books.ns_credit("cm-2", "acc-1", "5.01", "inv-7")
    books.stripe_credit("cm-3", "inv-8", 2_00)  # the ERP credited another invoice
    books.ns_credit("cm-3", "acc-2", "2.00", "inv-10")
    books.stripe_credit("cm-4", "inv-8", 3_00)  # never reached the ERP
    books.ns_credit("cm-stray", "acc-1", "1.00", None)


def _found(report: Any) -> set[tuple[str, str, str | None]]:
    return {(d.key, d.category.value, d.field) for d in report.comparison.discrepancies}


def test_money_pairs_find_every_drift_to_the_cent_and_leave_the_fixes_to_finance(
    stripe: StripeStandIn,
    netsuite: NetSuiteStandIn,
    policy: OwnershipPolicy,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    books = _seed(stripe, netsuite)
    settings = _settings(stripe, netsuite, monkeypatch)
    ns_before = {kind: netsuite.records(kind) for kind in ("invoice", "customerPayment")}

    invoices, payments, credits = run_configured(settings, policy=policy, engine=engine)

    assert _found(invoices) == {
        ("inv-2", "amount_mismatch", "net"),
        ("inv-2", "amount_mismatch", "gross"),
        ("inv-2", "amount_mismatch", "amount_due"),
        ("inv-3", "amount_mismatch", "net"),
        ("inv-3", "amount_mismatch", "tax"),
        ("inv-4", "amount_mismatch", "amount_due"),
        ("inv-4", "status_mismatch", "status"),
        ("inv-5", "field_mismatch", "number"),
        ("inv-6", "missing", None),
        ("inv-9", "orphan", None),
    }
    assert [f.name for f in invoices.comparison.fields] == [
        "number",
        "account_id",
        "currency",
        "net",
        "tax",
        "gross",
        "amount_due",
        "status",
    ]
    cent = {
        (d.key, d.field): d.to_json()["difference"]
        for d in invoices.comparison.discrepancies
        if d.category.value == "amount_mismatch"
    }
    assert cent[("inv-2", "gross")] == "1"  # one minor unit, exactly
    assert cent[("inv-3", "tax")] == "2000"
    assert cent[("inv-3", "net")] == "-2000"

    assert _found(payments) == {
        (books.paid("inv-4"), "missing", None),
        (books.paid("inv-8"), "amount_mismatch", "amount"),
        (books.paid("inv-10"), "field_mismatch", "account_id"),
        ("pay-stray", "orphan", None),
    }
    # NetSuite's SuiteQL rows hold no applications: the payment's invoice is not compared
    assert "invoice_id" not in [f.name for f in payments.comparison.fields]

    assert _found(credits) == {
        ("cm-2", "amount_mismatch", "amount"),
        ("cm-3", "field_mismatch", "invoice_id"),
        ("cm-4", "missing", None),
        ("cm-stray", "orphan", None),
    }

    # totals per account, period and currency: every group that moved is reported
    totals = {
        (tuple(t["group"]), t["field"]): (t["left"], t["right"])
        for t in payments.to_json()["totals"]["mismatches"]
    }
    assert totals == {
        (("acc-1", "2025-03", "EUR"), "amount"): ("4000", "11500"),
        (("acc-2", "2025-03", "EUR"), "amount"): ("20000", "5001"),
    }
    invoice_totals = invoices.to_json()["totals"]
    assert invoice_totals["group_by"] == ["account_id", "period", "currency"]
    assert not invoice_totals["agree"]

    # money is finance's: every fix is an exception item, nothing is written anywhere
    for report in (invoices, payments, credits):
        assert {o.state for o in report.outcomes} == {"exception"}
    with engine.connect() as conn:
        assert conn.execute(select(effect_ledger.c.idempotency_key)).all() == []
        items = conn.execute(select(exception_items.c.type)).scalars().all()
    assert len(items) == 10 + 4 + 4
    assert {kind: netsuite.records(kind) for kind in ns_before} == ns_before

    # a second run finds the same drift and opens no new item
    again = run_configured(settings, policy=policy, engine=engine)
    assert [_found(r) for r in again] == [_found(invoices), _found(payments), _found(credits)]
    with engine.connect() as conn:
        assert len(conn.execute(select(exception_items.c.id)).all()) == len(items)
