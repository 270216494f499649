"""The demo's month reconciled by the reconciliation engine: clean comes out clean, drift is found.

After the month, every pair (accounts, projects, invoices, payments, credit
memos) is read through the demo's connectors and keyed through the hub's
cross-reference. The month has real seams — a customer that was in NetSuite
before Accord, CRM accounts Accord never stamps, Stripe numbering invoices
itself — and none of them may show up as drift; one change made in NetSuite
afterwards must show up, and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from accord.q2c import context
from accord.q2c.deal_won import _matched_before
from accord.q2c.demo import (
    RECONCILED_PAIRS,
    Endpoints,
    StandIns,
    open_context,
    reconcile_month,
    run_month,
    seed_back_office,
)
from accord.q2c.matching import Candidate
from accord.q2c.scenario import seed
from accord.q2c.trace import resolve_trace_id
from accord.reconcile.store import ReconcileRuns


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[StandIns, Any]]:
    workdir: Path = tmp_path_factory.mktemp("q2c-reconcile")
    facts = seed.default_facts()
    world = seed.pre_amendment_world(seed.load_world(), facts.amendment)
    si = StandIns(13).start()
    hub = None
    try:
        endpoints = Endpoints(
            database_url=f"sqlite:///{workdir / 'accord.db'}",
            salesforce=si.salesforce.url,
            harvest=si.harvest.url,
            stripe=si.stripe.url,
            netsuite=si.netsuite.url,
            netsuite_credentials=si.netsuite.credentials,
            subsidiaries=seed_back_office(si, facts),
        )
        hub, ctx = open_context(endpoints, world, facts, executor_id="reconcile-test")
        run_month(si, ctx, outage_seconds=0.2)
        yield si, ctx
    finally:
        if hub is not None:
            hub.stop()
        si.stop()


def test_a_clean_month_reconciles_clean_on_every_pair_and_the_runs_are_stored(
    month: tuple[StandIns, Any],
) -> None:
    si, ctx = month
    result = reconcile_month(ctx)
    assert result["discrepancies"] == 0, result["details"]
    assert list(result["runs"]) == [name for name, _, _ in RECONCILED_PAIRS]
    with ctx.engine.connect() as conn:
        runs = ReconcileRuns(conn)
        for name, counts in result["runs"].items():
            stored = runs.get(counts["run_id"])
            assert stored is not None and stored.pair == name
            assert not any(stored.counts.values())
            assert stored.left_rows == stored.right_rows > 0, name
    # the seams the month has are really there, and are not drift
    legacy = [c for c in si.netsuite.records("customer") if c["externalId"] == "legacy-brightline"]
    assert len(legacy) == 1
    assert not any(a.get("Accord_Id__c") for a in si.salesforce.records("Account"))
    # NetSuite carries Stripe's number; the hub's own leads the memo
    stripe_numbers = {str(o["number"]) for o in si.stripe.objects("invoice")}
    erp = si.netsuite.records("invoice")
    assert {str(r["otherRefNum"]) for r in erp} == stripe_numbers
    for row in erp:
        hub = context.get(ctx, "invoice", str(row["externalId"]))
        assert hub is not None and row["otherRefNum"] == hub["stripe_number"]
        assert str(row["memo"]).startswith(f"{hub['number']}: ")
        # either number leads to the deal
        assert resolve_trace_id(ctx.engine, hub["stripe_number"]) == resolve_trace_id(
            ctx.engine, hub["number"]
        )


def test_one_drift_seeded_after_the_month_is_found_and_nothing_else(
    month: tuple[StandIns, Any],
) -> None:
    si, ctx = month
    invoice = next(r for r in si.netsuite.records("invoice") if r["currency"]["id"] == "2")
    lines = invoice["item"]["items"]
    changed = [
        {"item": {"id": str(line["item"]["id"])}, "amount": Decimal(str(line["amount"]))}
        for line in lines
    ]
    changed[0]["amount"] += Decimal("100.00")  # someone edits a posted receivable
    si.netsuite.update("invoice", str(invoice["id"]), {"item": {"items": changed}})

    result = reconcile_month(ctx)

    # a net-of-tax line: net and gross each 100.00 over what Stripe billed, nothing else
    key = invoice["externalId"]
    found = {(d["pair"], d["key"], d["class"], d.get("field")) for d in result["details"]}
    assert found == {
        ("invoices", key, "amount_mismatch", "net"),
        ("invoices", key, "amount_mismatch", "gross"),
    }
    for item in result["details"]:
        assert item["right"] - item["left"] == 10000  # minor units
    assert result["discrepancies"] == 2
    assert result["runs"]["invoices"]["amount_mismatch"] == 2


def test_a_retried_customer_step_keeps_the_erp_customer_it_was_matched_to() -> None:
    """Once the CRM account is linked, matching skips the account's own id as itself:
    the customer it was matched to (an ERP id of its own) stays the match; one Accord
    created (the canonical id as external id) does not, and is upserted again."""
    legacy = Candidate("acc-1", "Brightline Partners Ltd", None, "brightline.example", "102")
    other = Candidate("acc-2", "Northwind", None, "northwind.example", "103")
    rows = {"102": {"id": "legacy-brightline"}, "103": {"id": "acc-2"}}
    assert _matched_before("acc-1", [legacy, other], rows) is legacy
    assert _matched_before("acc-2", [legacy, other], rows) is None
    assert _matched_before(None, [legacy, other], rows) is None
