"""The PSA's pairs through the connectors and stand-ins: projects (Harvest ⇄ NetSuite) and
billable work (approved Harvest time and expenses ⇄ billed Stripe invoice lines, the leakage pair).

Projects are the PSA's: a name or status that differs is written to the ERP
unasked, as an idempotent effect; a healed drift that comes back is healed
again by the next run, while a retry of one run writes nothing twice. Billable
work is never rewritten: unbilled work, a line billed at the wrong amount or
currency, and a line billing work that is not approved all go to a person.
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
from accord.reconcile.connect import SOURCE_KEY
from accord.reconcile.schedule import run_configured
from accord.sandbox.harvest import HarvestStandIn
from accord.sandbox.netsuite import NetSuiteStandIn
from accord.sandbox.stripe import StripeStandIn
from accord.store import make_engine, upgrade
from accord.store.tables import effects as effect_ledger
from accord.store.tables import exceptions as exception_items

KEY = "sk_test_reconcile"

POLICY: dict[str, Any] = {
    "ownership": {
        "systems": {"crm": "salesforce", "psa": "harvest", "erp": "netsuite", "billing": "stripe"},
        "project": {"owner": "psa"},
        "time_entry": {"owner": "psa"},
    }
}


@pytest.fixture
def harvest() -> Iterator[HarvestStandIn]:
    with HarvestStandIn(seed=5) as stand_in:
        yield stand_in


@pytest.fixture
def netsuite() -> Iterator[NetSuiteStandIn]:
    with NetSuiteStandIn(seed=5) as stand_in:
        yield stand_in


@pytest.fixture
def stripe() -> Iterator[StripeStandIn]:
    clock = datetime(2025, 3, 31, tzinfo=UTC).timestamp
    with StripeStandIn(api_key=KEY, rate_limit=None, clock=clock, seed=5) as stand_in:
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
    monkeypatch: pytest.MonkeyPatch,
    pair: str,
    harvest: HarvestStandIn,
    netsuite: NetSuiteStandIn | None = None,
    stripe: StripeStandIn | None = None,
) -> Settings:
    monkeypatch.setenv("TEST_HV_TOKEN", harvest.token)
    monkeypatch.setenv("TEST_HV_ACCOUNT", harvest.account_id)
    systems = f"""
  harvest:
    role: psa
    connector: harvest
    base_url: {harvest.url}
    token_env: TEST_HV_TOKEN
    credentials_env: {{account_id: TEST_HV_ACCOUNT}}"""
    right = "netsuite"
    if netsuite is not None:
        for name, value in netsuite.credentials.items():
            monkeypatch.setenv(f"TEST_NS_{name.upper()}", value)
        ns_env = "".join(
            f"\n      {name}: TEST_NS_{name.upper()}" for name in sorted(netsuite.credentials)
        )
        systems += f"""
  netsuite:
    role: erp
    connector: netsuite
    base_url: {netsuite.url}
    credentials_env:{ns_env}"""
    if stripe is not None:
        monkeypatch.setenv("TEST_STRIPE_KEY", KEY)
        right = "stripe"
        systems += f"""
  stripe:
    role: billing
    connector: stripe
    base_url: {stripe.url}
    token_env: TEST_STRIPE_KEY"""
    return parse_settings(
        f"""
systems:{systems}
reconcile:
  pairs: [{pair}]
  sources:
    {pair}:
      left: {{system: harvest}}
      right: {{system: {right}}}
"""
    )


def _found(report: Any) -> set[tuple[str, str, str | None]]:
    return {(d.key, d.category.value, d.field) for d in report.comparison.discrepancies}


def _ledger(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(effect_ledger.c.status)).scalars())


# -- projects -------------------------------------------------------------------------------


def _seed_projects(harvest: HarvestStandIn, netsuite: NetSuiteStandIn) -> None:
    client = harvest.create("clients", {"name": "Acme Ltd", "currency": "EUR"})
    customer = netsuite.create(
        "customer", {"companyName": "Acme Ltd", "subsidiary": {"id": "1"}}, "acc-1"
    )

    def project(code: str | None, name: str, **extra: Any) -> None:
        body = {
            "client_id": client["id"],
            "name": name,
            "code": code,
            "is_billable": True,
            "bill_by": "Project",
            "hourly_rate": 150.0,
            "budget_by": "none",
            **extra,
        }
        harvest.create("projects", body)

    def job(key: str, name: str, **extra: Any) -> None:
        body = {"companyName": name, "parent": {"id": customer["id"]}, **extra}
        netsuite.create("job", body, key)

    project("prj-same", "Acme · same")
    job("prj-same", "Acme · same")
    project("prj-name", "Acme · rollout")  # renamed in the ERP by hand
    job("prj-name", "Acme · roll-out (old)")
    project("prj-closed", "Acme · done", is_active=False)  # closed in the PSA only
    job("prj-closed", "Acme · done")
    project("prj-new", "Acme · new")  # not in the ERP yet
    job("prj-stray", "Acme · stray")  # nothing in the PSA owns it
    project(None, "Internal, no code")  # not Accord's: no canonical id


def _job(netsuite: NetSuiteStandIn, key: str) -> dict[str, Any]:
    (found,) = [j for j in netsuite.records("job") if j["externalId"] == key]
    return found


def test_projects_drift_healed_in_the_erp_and_a_recurrence_healed_again(
    harvest: HarvestStandIn,
    netsuite: NetSuiteStandIn,
    policy: OwnershipPolicy,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _seed_projects(harvest, netsuite)
    settings = _settings(monkeypatch, "projects", harvest, netsuite)

    (first,) = run_configured(settings, policy=policy, engine=engine)

    assert _found(first) == {
        ("prj-name", "field_mismatch", "name"),
        ("prj-closed", "status_mismatch", "status"),
        ("prj-new", "missing", None),
        ("prj-stray", "orphan", None),
    }
    # Harvest knows no account ids: the account is not compared
    assert [f.name for f in first.comparison.fields] == ["name", "status"]
    outcome = {
        d.key: o for d, o in zip(first.comparison.discrepancies, first.outcomes, strict=True)
    }
    assert outcome["prj-name"].state == outcome["prj-closed"].state == "healed"
    assert outcome["prj-stray"].state == "exception"
    # a job needs its customer, which the PSA project does not name: a person creates it
    assert outcome["prj-new"].state == "exception"
    assert _job(netsuite, "prj-name")["companyName"] == "Acme · rollout"
    assert _job(netsuite, "prj-closed")["isInactive"] is True
    assert _ledger(engine).count("done") == 2

    (second,) = run_configured(settings, policy=policy, engine=engine)
    assert _found(second) == {("prj-new", "missing", None), ("prj-stray", "orphan", None)}
    with engine.connect() as conn:
        assert len(conn.execute(select(exception_items.c.id)).all()) == 2

    # someone sets the old name back: the next run heals it again (a new effect, not a replay)
    netsuite.update("job", "eid:prj-name", {"companyName": "Acme · roll-out (old)"})
    (third,) = run_configured(settings, policy=policy, engine=engine)
    assert ("prj-name", "field_mismatch", "name") in _found(third)
    assert _job(netsuite, "prj-name")["companyName"] == "Acme · rollout"
    assert _ledger(engine).count("done") == 3

    # a retry of that same run (same run id) replays its effect from the ledger: no new write
    netsuite.update("job", "eid:prj-name", {"companyName": "Acme · roll-out (old)"})
    writes = netsuite.counters.get("PATCH /record/v1/{type}/eid:{value}", 0)
    assert writes == 3  # name, status, and the name again
    (retried,) = run_configured(
        settings, policy=policy, engine=engine, run_ids={"projects": third.run_id}
    )
    assert retried.run_id == third.run_id
    assert netsuite.counters.get("PATCH /record/v1/{type}/eid:{value}", 0) == writes
    assert _ledger(engine).count("done") == 3
    # and a new run writes it once more
    run_configured(settings, policy=policy, engine=engine)
    assert _job(netsuite, "prj-name")["companyName"] == "Acme · rollout"
    assert _ledger(engine).count("done") == 4


# -- billable work (leakage) -------------------------------------------------------------------


def _stripe_post(http: httpx.Client, path: str, **params: Any) -> dict[str, Any]:
    response = http.post(
        path,
        content=urlencode(encode_form(params)).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _bill(
    http: httpx.Client, currency: str, lines: list[tuple[str, int]], *, issue: bool = True
) -> None:
    customer = _stripe_post(
        http, "/v1/customers", name=f"Acme {currency}", metadata={"accord_id": "acc-1"}
    )
    for source, cents in lines:
        _stripe_post(
            http,
            "/v1/invoiceitems",
            customer=customer["id"],
            amount=cents,
            currency=currency,
            metadata={SOURCE_KEY: source},
        )
    if issue:
        draft = _stripe_post(
            http,
            "/v1/invoices",
            customer=customer["id"],
            currency=currency,
            collection_method="send_invoice",
            days_until_due=30,
            pending_invoice_items_behavior="include",
        )
        _stripe_post(http, f"/v1/invoices/{draft['id']}/finalize")


def test_billable_work_finds_leakage_and_mis_billed_lines_for_a_person(
    harvest: HarvestStandIn,
    stripe: StripeStandIn,
    policy: OwnershipPolicy,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seeded = harvest.seed(time_entries=5, expenses=2, spent_date=datetime(2025, 3, 14).date())
    t = [f"harvest:time_entry:{i}" for i in seeded.time_entries]
    e = [f"harvest:expense:{i}" for i in seeded.expenses]
    for entry in seeded.time_entries[:4]:  # the fifth stays unapproved
        harvest.approve("time_entries", entry)
    for expense in seeded.expenses:
        harvest.approve("expenses", expense)
    hours = {r["id"]: Decimal(str(r["hours"])) for r in harvest.records("time_entries")}
    value = {k: int(hours[i] * 150 * 100) for k, i in zip(t, seeded.time_entries, strict=True)}
    with httpx.Client(base_url=stripe.url, auth=(KEY, "")) as http:
        _bill(
            http,
            "eur",
            [
                (t[0], value[t[0]]),  # billed right
                (t[1], value[t[1]] + 1),  # billed a cent high
                (t[4], value[t[4]]),  # billed though never approved
                (e[0], 12_50),
                (e[1], 13_50),
            ],
        )
        _bill(http, "usd", [(t[3], value[t[3]])])  # billed in the wrong currency
        _bill(http, "eur", [(t[2], value[t[2]])], issue=False)  # on no issued invoice yet
    settings = _settings(monkeypatch, "billable_work", harvest, stripe=stripe)

    (first,) = run_configured(settings, policy=policy, engine=engine)

    assert _found(first) == {
        (t[1], "amount_mismatch", "amount"),
        (t[2], "missing", None),  # leakage: approved, billable, not invoiced
        (t[3], "field_mismatch", "currency"),
        (t[4], "orphan", None),
    }
    assert [f.name for f in first.comparison.fields] == ["currency", "amount"]
    assert (first.comparison.left_rows, first.comparison.right_rows) == (6, 6)
    # an invoice line is never rewritten or created by reconciliation: all for a person
    assert {o.state for o in first.outcomes} == {"exception"}
    assert _ledger(engine) == []
    totals = first.to_json()["totals"]
    assert totals["group_by"] == ["currency"]
    by_currency = {tuple(m["group"]): m for m in totals["mismatches"]}
    assert set(by_currency) == {("EUR",), ("USD",)}
    assert by_currency[("USD",)]["left"] == "0"

    (second,) = run_configured(settings, policy=policy, engine=engine)
    assert _found(second) == _found(first)
    with engine.connect() as conn:
        assert len(conn.execute(select(exception_items.c.id)).all()) == 4
