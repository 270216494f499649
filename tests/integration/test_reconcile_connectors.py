"""Pairs read and healed through the vendor connectors, against the in-process stand-ins.

Drift of every class the pair can hold is seeded into the stand-ins' state; a
run configured in ``accord.yaml`` (systems with base URL and credentials) finds
all of it, heals what the policy allows through the connector writes (as
idempotent effects in the ledger), flags the rest, and a run after the effects
landed finds nothing new.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from accord.config import Settings, parse_settings
from accord.ownership import OwnershipPolicy, parse_policy
from accord.reconcile.schedule import run_configured
from accord.reconcile.store import ReconcileRuns
from accord.sandbox.netsuite import NetSuiteStandIn
from accord.sandbox.salesforce import SalesforceStandIn
from accord.store import make_engine, upgrade
from accord.store.tables import effects as effect_ledger
from accord.store.tables import exceptions as exception_items

POLICY: dict[str, Any] = {
    "ownership": {
        "systems": {"crm": "salesforce", "psa": "harvest", "erp": "netsuite", "billing": "stripe"},
        "account": {
            "owner": "crm",
            "fields": {
                "legal_name": "crm",
                "domain": "crm",
                # finance's fields, healed unasked here so that a write to the CRM is proven too
                "default_currency": {"owner": "erp", "mode": "auto"},
                "payment_terms_days": {"owner": "erp", "mode": "review"},
            },
        },
        "invoice": {"owner": "billing", "mode": "review"},
    }
}


@pytest.fixture
def salesforce() -> Iterator[SalesforceStandIn]:
    with SalesforceStandIn(seed=1) as stand_in:
        yield stand_in


@pytest.fixture
def netsuite() -> Iterator[NetSuiteStandIn]:
    with NetSuiteStandIn(seed=1) as stand_in:
        yield stand_in


@pytest.fixture
def policy() -> OwnershipPolicy:
    return parse_policy(POLICY, source="test")


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    made = make_engine(f"sqlite:///{tmp_path / 'accord.db'}")
    upgrade(made)
    yield made
    made.dispose()


def _settings(
    salesforce: SalesforceStandIn, netsuite: NetSuiteStandIn, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    monkeypatch.setenv("TEST_SF_TOKEN", salesforce.token)
    for name, value in netsuite.credentials.items():
        monkeypatch.setenv(f"TEST_NS_{name.upper()}", value)
    ns_env = "".join(
        f"\n      {name}: TEST_NS_{name.upper()}" for name in sorted(netsuite.credentials)
    )
    return parse_settings(
        f"""
systems:
  salesforce:
    role: crm
    connector: salesforce
    base_url: {salesforce.url}
    token_env: TEST_SF_TOKEN
  netsuite:
    role: erp
    connector: netsuite
    base_url: {netsuite.url}
    credentials_env:{ns_env}
reconcile:
  pairs: [accounts]
  sources:
    accounts:
      left: {{system: salesforce}}
      right: {{system: netsuite}}
"""
    )


def _sf_account(stand_in: SalesforceStandIn, key: str, name: str, **extra: Any) -> None:
    stand_in.create(
        "Account",
        {
            "Name": name,
            "Website": f"https://{key}.example.com",
            "CurrencyIsoCode": "EUR",
            "Accord_Status__c": "active",
            "Accord_Id__c": key,
            **extra,
        },
    )


def _ns_customer(stand_in: NetSuiteStandIn, key: str, name: str, **extra: Any) -> None:
    stand_in.create(
        "customer",
        {
            "companyName": name,
            "subsidiary": {"id": "1"},
            "currency": {"id": "4"},  # EUR
            "url": f"https://{key}.example.com",
            "isInactive": False,
            **extra,
        },
        key,
    )


def _seed_accounts(salesforce: SalesforceStandIn, netsuite: NetSuiteStandIn) -> None:
    _sf_account(salesforce, "acc-same", "Same Ltd")
    _ns_customer(netsuite, "acc-same", "Same Ltd")
    _sf_account(salesforce, "acc-name", "Acme Ltd")  # field_mismatch, owner CRM
    _ns_customer(netsuite, "acc-name", "ACME Limited")
    _sf_account(salesforce, "acc-ccy", "Globex", CurrencyIsoCode="USD")  # owner ERP: EUR wins
    _ns_customer(netsuite, "acc-ccy", "Globex")
    _sf_account(salesforce, "acc-status", "Initech")  # status_mismatch, owner CRM
    _ns_customer(netsuite, "acc-status", "Initech", isInactive=True)
    _sf_account(salesforce, "acc-new", "Umbrella", Website="umbrella.example.com")  # missing
    _ns_customer(netsuite, "acc-stray", "Stray Co")  # orphan: nothing owns it
    salesforce.create("Account", {"Name": "Not synced"})  # no Accord id: not Accord's


def _found(report: Any) -> set[tuple[str, str, str | None]]:
    return {(d.key, d.category.value, d.field) for d in report.comparison.discrepancies}


def test_accounts_drift_of_every_class_found_healed_through_the_connectors(
    salesforce: SalesforceStandIn,
    netsuite: NetSuiteStandIn,
    policy: OwnershipPolicy,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _seed_accounts(salesforce, netsuite)
    settings = _settings(salesforce, netsuite, monkeypatch)

    (first,) = run_configured(settings, policy=policy, engine=engine)

    assert _found(first) == {
        ("acc-name", "field_mismatch", "legal_name"),
        ("acc-ccy", "field_mismatch", "default_currency"),
        ("acc-status", "status_mismatch", "status"),
        ("acc-new", "missing", None),
        ("acc-stray", "orphan", None),
    }
    # the vendor without payment terms is not compared on them
    assert [f.name for f in first.comparison.fields] == [
        "legal_name",
        "domain",
        "default_currency",
        "status",
    ]
    assert (first.comparison.left_rows, first.comparison.right_rows) == (5, 5)
    pairs = zip(first.comparison.discrepancies, first.outcomes, strict=True)
    states = {(d.key, o.state) for d, o in pairs}
    assert states == {
        ("acc-name", "healed"),
        ("acc-ccy", "healed"),
        ("acc-status", "healed"),
        ("acc-new", "healed"),
        ("acc-stray", "exception"),
    }

    # the owners' values landed through the vendors' APIs
    customers = {c["externalId"]: c for c in netsuite.records("customer")}
    assert customers["acc-name"]["companyName"] == "Acme Ltd"
    assert customers["acc-status"]["isInactive"] is False
    assert customers["acc-new"]["companyName"] == "Umbrella"
    assert customers["acc-new"]["url"] == "https://umbrella.example.com"
    accounts = {a.get("Accord_Id__c"): a for a in salesforce.records("Account")}
    assert accounts["acc-ccy"]["CurrencyIsoCode"] == "EUR"
    assert "acc-stray" in customers  # reconciliation never deletes

    with engine.connect() as conn:
        ledger = conn.execute(select(effect_ledger.c.idempotency_key, effect_ledger.c.status)).all()
        items = conn.execute(select(exception_items.c.type)).scalars().all()
    assert len(ledger) == 4 and {status for _, status in ledger} == {"done"}
    assert items == ["reconcile.orphan"]

    # a second run: the effects landed, only the flagged orphan is left, not raised again
    (second,) = run_configured(settings, policy=policy, engine=engine)
    assert _found(second) == {("acc-stray", "orphan", None)}
    with engine.connect() as conn:
        assert len(conn.execute(select(exception_items.c.id)).all()) == 1
        assert len(conn.execute(select(effect_ledger.c.idempotency_key)).all()) == 4

    # the person who owns the orphan removes it; then the systems agree
    netsuite.delete("customer", "eid:acc-stray")
    (third,) = run_configured(settings, policy=policy, engine=engine)
    assert third.comparison.clean
    with engine.connect() as conn:
        runs = ReconcileRuns(conn)
        latest = runs.latest("accounts")
        assert latest is not None and latest.id == third.run_id


def test_a_run_without_healing_writes_nothing(
    salesforce: SalesforceStandIn,
    netsuite: NetSuiteStandIn,
    policy: OwnershipPolicy,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _seed_accounts(salesforce, netsuite)
    settings = _settings(salesforce, netsuite, monkeypatch)
    before = netsuite.records("customer")

    (report,) = run_configured(settings, policy=policy, engine=engine, heal=False)

    assert len(report.comparison.discrepancies) == 5
    assert {o.state for o in report.outcomes} == {"open"}
    assert netsuite.records("customer") == before


def test_a_source_naming_an_unknown_system_is_refused(
    policy: OwnershipPolicy, engine: Engine
) -> None:
    settings = parse_settings(
        """
reconcile:
  sources:
    accounts:
      left: {system: salesforce}
      right: {system: netsuite}
"""
    )
    from accord.errors import InvalidInput

    with pytest.raises(InvalidInput, match="no system 'salesforce'") as raised:
        run_configured(settings, policy=policy, engine=engine)
    assert "reconcile.sources.accounts.left" in str(raised.value)
