"""Connector sides keyed through the hub's cross-reference, against the stand-ins.

A customer that was in the ERP before Accord keeps the ERP's own
``externalId``, and a CRM account Accord matched carries no ``Accord_Id__c``:
by the vendors' own ids they are strangers. Given the store, each side keys
them (and the invoices that refer to them) by the canonical id the hub linked
them to, so they compare as one record; without it the old behaviour stands.
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
from sqlalchemy import Engine

from accord.connectors.base import Connector
from accord.connectors.stripe.connector import encode_form
from accord.ownership import OwnershipPolicy, parse_policy
from accord.reconcile.connect import build_connector, connector_side
from accord.reconcile.pairs import pair_named
from accord.reconcile.run import RunReport, reconcile_pair
from accord.sandbox.netsuite import NetSuiteStandIn
from accord.sandbox.salesforce import SalesforceStandIn
from accord.sandbox.stripe import StripeStandIn
from accord.store import Xref, make_engine, upgrade

ISSUED = datetime(2025, 3, 10, 12, tzinfo=UTC)
KEY = "sk_test_xref"
POLICY: dict[str, Any] = {
    "ownership": {
        "systems": {"crm": "salesforce", "psa": "harvest", "erp": "netsuite", "billing": "stripe"},
        "account": {"owner": "crm"},
        "invoice": {"owner": "billing", "mode": "review"},
    }
}


@pytest.fixture
def policy() -> OwnershipPolicy:
    return parse_policy(POLICY, source="test")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Engine]:
    made = make_engine(f"sqlite:///{tmp_path / 'accord.db'}")
    upgrade(made)
    yield made
    made.dispose()


@pytest.fixture
def salesforce() -> Iterator[SalesforceStandIn]:
    with SalesforceStandIn(seed=5) as stand_in:
        yield stand_in


@pytest.fixture
def netsuite() -> Iterator[NetSuiteStandIn]:
    with NetSuiteStandIn(seed=5) as stand_in:
        yield stand_in


@pytest.fixture
def stripe() -> Iterator[StripeStandIn]:
    with StripeStandIn(api_key=KEY, rate_limit=None, clock=ISSUED.timestamp, seed=5) as stand_in:
        yield stand_in


def _link(store: Engine, entity: str, canonical: str, system: str, obj: str, ext: str) -> None:
    with store.begin() as conn:
        Xref(conn).link(entity, canonical, system, obj, ext)


def _ns_customer(netsuite: NetSuiteStandIn, external_id: str, name: str) -> str:
    row = netsuite.create(
        "customer",
        {
            "companyName": name,
            "subsidiary": {"id": "1"},
            "currency": {"id": "4"},  # EUR
            "url": f"https://{name.lower()}.example",
            "isInactive": False,
        },
        external_id,
    )
    return str(row["id"])


def _sf_account(salesforce: SalesforceStandIn, name: str, **extra: Any) -> str:
    row = salesforce.create(
        "Account",
        {
            "Name": name,
            "Website": f"https://{name.lower()}.example",
            "CurrencyIsoCode": "EUR",
            "Accord_Status__c": "active",
            **extra,
        },
    )
    return str(row["Id"])


def _run(
    pair_name: str,
    left: Connector,
    right: Connector,
    policy: OwnershipPolicy,
    store: Engine | None,
) -> RunReport:
    pair = pair_named(pair_name)
    return reconcile_pair(
        pair,
        connector_side(pair, left, store=store),
        connector_side(pair, right, store=store),
        policy=policy,
        heal=False,
    )


def _found(report: RunReport) -> set[tuple[str, str, str | None]]:
    return {(d.key, d.category.value, d.field) for d in report.comparison.discrepancies}


def test_accounts_are_keyed_by_the_canonical_id_the_hub_linked_them_to(
    salesforce: SalesforceStandIn,
    netsuite: NetSuiteStandIn,
    store: Engine,
    policy: OwnershipPolicy,
) -> None:
    # created by Accord: both vendors keep the canonical id
    _sf_account(salesforce, "Made", Accord_Id__c="acc-made")
    made = _ns_customer(netsuite, "acc-made", "Made")
    _link(store, "account", "acc-made", "netsuite", "customer", made)
    # in the ERP before Accord, matched to a CRM account that was never stamped
    legacy_sf = _sf_account(salesforce, "Legacy")
    legacy_ns = _ns_customer(netsuite, "legacy-7", "Legacy")
    _link(store, "account", "acc-legacy", "salesforce", "Account", legacy_sf)
    _link(store, "account", "acc-legacy", "netsuite", "customer", legacy_ns)
    # not Accord's at all: in neither the vendor's ids nor the cross-reference
    _sf_account(salesforce, "Stranger")

    crm = build_connector(
        "salesforce", "salesforce", base_url=salesforce.url, token=salesforce.token
    )
    erp = build_connector(
        "netsuite", "netsuite", base_url=netsuite.url, token=None, credentials=netsuite.credentials
    )
    try:
        linked = _run("accounts", crm, erp, policy, store)
        assert linked.comparison.clean, linked.to_json()
        assert (linked.comparison.left_rows, linked.comparison.right_rows) == (2, 2)

        # without the store each vendor's own id stands: the legacy customer is a stranger
        unlinked = _run("accounts", crm, erp, policy, None)
        assert _found(unlinked) == {("legacy-7", "orphan", None)}
        assert (unlinked.comparison.left_rows, unlinked.comparison.right_rows) == (1, 2)

        # a drift on the linked record is found under its canonical id
        netsuite.update("customer", legacy_ns, {"companyName": "Legacy Holdings"})
        drifted = _run("accounts", crm, erp, policy, store)
        assert _found(drifted) == {("acc-legacy", "field_mismatch", "legal_name")}
    finally:
        crm.close()
        erp.close()


def _stripe_post(http: httpx.Client, path: str, **params: Any) -> dict[str, Any]:
    response = http.post(
        path,
        content=urlencode(encode_form(params)).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_an_invoices_customer_resolves_through_the_cross_reference(
    stripe: StripeStandIn,
    netsuite: NetSuiteStandIn,
    store: Engine,
    policy: OwnershipPolicy,
) -> None:
    with httpx.Client(base_url=stripe.url, auth=(KEY, "")) as http:
        customer = _stripe_post(http, "/v1/customers", name="Legacy", metadata={"accord_id": "a-1"})
        _stripe_post(
            http, "/v1/invoiceitems", customer=customer["id"], amount=50000, currency="eur"
        )
        draft = _stripe_post(
            http,
            "/v1/invoices",
            customer=customer["id"],
            currency="eur",
            collection_method="send_invoice",
            days_until_due=30,
            pending_invoice_items_behavior="include",
            metadata={"accord_id": "inv-1"},
        )
        invoice = _stripe_post(http, f"/v1/invoices/{draft['id']}/finalize")
    legacy = _ns_customer(netsuite, "legacy-7", "Legacy")
    netsuite.create(
        "invoice",
        {
            "entity": {"id": legacy},
            "otherRefNum": invoice["number"],
            "tranDate": ISSUED.date().isoformat(),
            "item": {"items": [{"item": {"id": "1"}, "amount": Decimal("500.00")}]},
        },
        "inv-1",
    )
    _link(store, "account", "a-1", "stripe", "customer", str(customer["id"]))
    _link(store, "account", "a-1", "netsuite", "customer", legacy)

    billing = build_connector("stripe", "stripe", base_url=stripe.url, token=KEY)
    erp = build_connector(
        "netsuite", "netsuite", base_url=netsuite.url, token=None, credentials=netsuite.credentials
    )
    try:
        linked = _run("invoices", billing, erp, policy, store)
        assert linked.comparison.clean, linked.to_json()
        unlinked = _run("invoices", billing, erp, policy, None)
        assert _found(unlinked) == {("inv-1", "field_mismatch", "account_id")}
        [item] = unlinked.comparison.discrepancies
        assert (item.left, item.right) == ("a-1", "legacy-7")
    finally:
        billing.close()
        erp.close()
