"""Quote to cash end to end: ``accord demo`` and ``accord trace`` driven as a user would.

The demo runs the consulting firm's month against the vendor stand-ins on the
embedded default; these tests check its money to the cent against the billing
engine (``accord bill`` on the same month) and against what Stripe and NetSuite
hold, and follow every invoice line back to its sources.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
MONTH = ROOT / "examples" / "consulting-month.yaml"


def accord(*args: str, cwd: Path | None = None, timeout: float = 300) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "accord.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=cwd,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("q2c")


@pytest.fixture(scope="module")
def clean(workdir: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(accord("demo", "--json", "--dir", "clean", cwd=workdir))
    return doc


@pytest.fixture(scope="module")
def engine_run() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(accord("bill", str(MONTH), "--json"))
    return doc


def _by_number(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["contract"]: item for item in summary["invoices"]["items"]}


def test_the_month_is_invoiced_to_the_cent_as_the_billing_engine_computes_it(
    clean: dict[str, Any], engine_run: dict[str, Any]
) -> None:
    demo = _by_number(clean)
    assert clean["invoices"]["count"] == len(engine_run["invoices"]) == 3
    for expected in engine_run["invoices"]:
        got = demo[expected["contract"]]
        assert got["currency"] == expected["currency"]
        assert (got["net"], got["tax"], got["gross"]) == (
            expected["net"],
            expected["tax"],
            expected["gross"],
        )
        # line by line: the same lines, amounts and tax, in the engine's order
        assert [(x["contract_line"], x["kind"], x["amount"], x["tax"]) for x in got["lines"]] == [
            (x["contract_line"], x["kind"], x["amount"], x["tax"]) for x in expected["lines"]
        ]
    totals: dict[str, Decimal] = {}
    for inv in engine_run["invoices"]:
        totals[inv["currency"]] = totals.get(inv["currency"], Decimal(0)) + Decimal(inv["gross"])
    assert clean["invoices"]["totals"] == {k: f"{v:.2f}" for k, v in sorted(totals.items())}


def test_stripe_and_netsuite_hold_the_same_money_as_the_hub(clean: dict[str, Any]) -> None:
    assert clean["reconciliation"]["discrepancies"] == 0
    assert clean["systems"]["stripe"]["invoice"] == 3
    assert clean["systems"]["netsuite"]["invoice"] == 3
    assert clean["systems"]["netsuite"]["customerPayment"] == clean["payments"]["count"] == 3
    assert clean["payments"]["totals"] == clean["invoices"]["totals"]
    assert all(item["status"] == "paid" for item in clean["invoices"]["items"])


def test_the_duplicate_customer_is_caught_for_sales_ops_and_not_created(
    clean: dict[str, Any],
) -> None:
    assert clean["exceptions"]["open"] == {"sales_ops": 1}
    # four accounts in the CRM, three customers in the ERP: the pre-existing one updated,
    # two created, the near-duplicate held
    assert clean["systems"]["salesforce"]["Account"] == 4
    assert clean["systems"]["netsuite"]["customer"] == 3
    assert clean["systems"]["harvest"]["clients"] == 3
    # each project staffed in the PSA with the people the plan puts on it, once
    assert clean["systems"]["harvest"]["user_assignments"] == 6


def test_every_effect_happened_once_and_nothing_was_dead_lettered(clean: dict[str, Any]) -> None:
    assert clean["effects"]["duplicates"] == 0
    assert clean["effects"]["calls"] > 0
    assert clean["dead_letters"]["count"] == 0


def test_the_stripe_outage_is_survived(clean: dict[str, Any]) -> None:
    assert clean["outage"]["system"] == "stripe"
    assert clean["outage"]["survived"] is True
    assert clean["effects"]["retried"] >= 1


def test_the_credit_memo_and_the_realised_fx_gain_are_booked(clean: dict[str, Any]) -> None:
    # the managed-service overage of 845.00 GBP and its 20 % VAT
    assert clean["credit_memos"] == {"count": 1, "totals": {"GBP": "1014.00"}}
    assert clean["systems"]["netsuite"]["creditMemo"] == 1
    # 4069.26 EUR booked at 0.85 (3458.87 GBP), paid at 0.86 (3499.56 GBP)
    assert clean["payments"]["realised_fx"] == [
        {"currency": "GBP", "difference": "40.69", "kind": "gain"}
    ]


def test_the_summary_carries_latency_and_a_trace(clean: dict[str, Any]) -> None:
    latency = clean["latency"]
    assert latency["deals"] == 3
    assert (
        latency["deal_won_to_provisioned_p95_seconds"]
        >= (latency["deal_won_to_provisioned_p50_seconds"])
    )
    assert clean["trace_sample"]


def test_trace_leads_from_the_deal_to_the_payment_and_from_each_line_to_its_sources(
    clean: dict[str, Any], workdir: Path
) -> None:
    doc = json.loads(
        accord("trace", clean["trace_sample"], "--json", "--db", "clean/accord.db", cwd=workdir)
    )
    assert doc["opportunity"] == "opp-kw-2026"
    stages = [e["stage"] for e in doc["events"]]
    for stage in ("deal", "customer", "project", "contract", "work", "invoice", "payment"):
        assert stage in stages, stage
    assert stages.index("deal") < stages.index("project") < stages.index("invoice")
    assert stages.index("invoice") < stages.index("payment")
    systems = {s for e in doc["events"] for s in e["ids"]}
    assert {"salesforce", "harvest", "netsuite", "stripe"} <= systems
    assert all(e["at"] for e in doc["events"])
    [invoice] = doc["invoices"]
    assert invoice["number"] == "KW-2026-202603"
    assert {"stripe", "netsuite"} <= set(invoice["ids"])
    for line in invoice["lines"]:
        assert line["sources"], line
        for source in line["sources"]:
            assert source["kind"] in ("time_entry", "expense")
            assert source["harvest_id"] and source["date"] and source["person"]
    kinds = {s["kind"] for line in invoice["lines"] for s in line["sources"]}
    assert kinds == {"time_entry", "expense"}


def test_trace_finds_a_deal_by_opportunity_and_by_invoice_number(
    clean: dict[str, Any], workdir: Path
) -> None:
    by_opp = json.loads(
        accord("trace", "opp-bl-2026", "--json", "--db", "clean/accord.db", cwd=workdir)
    )
    by_number = json.loads(
        accord("trace", "BL-2026-202603", "--json", "--db", "clean/accord.db", cwd=workdir)
    )
    assert by_opp["trace_id"] == by_number["trace_id"]
    [invoice] = by_opp["invoices"]
    sources = {s["kind"] for line in invoice["lines"] for s in line["sources"]}
    assert "milestone" in sources  # bl-m2, accepted on 27 March
    text = accord("trace", "opp-bl-2026", "--db", "clean/accord.db", cwd=workdir)
    assert "Invoice BL-2026-202603" in text


def test_trace_of_an_unknown_id_says_so() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "accord.cli", "trace", "nothing-here", "--db", "/dev/null/x.db"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0


def test_chaos_gives_the_clean_runs_invoices_payments_and_totals_with_no_duplicates(
    clean: dict[str, Any], workdir: Path
) -> None:
    chaos = json.loads(
        accord("demo", "--json", "--chaos", "--dir", "chaos", cwd=workdir, timeout=600)
    )
    assert chaos["chaos"]["kills"] >= 1
    for key in ("count", "totals"):
        assert chaos["invoices"][key] == clean["invoices"][key]
        assert chaos["payments"][key] == clean["payments"][key]
    assert [(i["contract"], i["gross"]) for i in chaos["invoices"]["items"]] == [
        (i["contract"], i["gross"]) for i in clean["invoices"]["items"]
    ]
    assert chaos["credit_memos"] == clean["credit_memos"]
    assert chaos["effects"]["duplicates"] == 0
    assert chaos["reconciliation"]["discrepancies"] == 0
    assert chaos["systems"] == clean["systems"]


def test_the_held_deal_traces_to_its_possible_duplicate_exception(
    clean: dict[str, Any], workdir: Path
) -> None:
    doc = json.loads(
        accord("trace", "opp-blg-2026", "--json", "--db", "clean/accord.db", cwd=workdir)
    )
    problems = [e for e in doc["events"] if e["kind"] == "exception"]
    assert len(problems) == 1
    assert problems[0]["what"].startswith("possible_duplicate for sales_ops")
    assert "Brightline Partners Ltd" in problems[0]["what"]
    assert not doc["invoices"]
    assert not [e for e in doc["events"] if e["kind"] == "effect"]  # nothing was written


@pytest.mark.parametrize("opportunity", ["opp-nw-2026", "opp-bl-2026", "opp-kw-2026"])
def test_every_invoice_line_leads_back_to_the_work_the_engine_billed(
    clean: dict[str, Any], engine_run: dict[str, Any], workdir: Path, opportunity: str
) -> None:
    """Each line's sources, followed through the trace to the entries logged in Harvest,
    are exactly the scenario's time entries, expenses, milestone or period the engine named.
    (Harvest takes at most 24 hours per entry, so a longer day arrives in parts.)"""
    doc = json.loads(accord("trace", opportunity, "--json", "--db", "clean/accord.db", cwd=workdir))
    [invoice] = doc["invoices"]
    expected = next(i for i in engine_run["invoices"] if f"opp-{i['contract']}" == opportunity)
    assert len(invoice["lines"]) == len(expected["lines"])
    for line, want in zip(invoice["lines"], expected["lines"], strict=True):
        found = set()
        for source in line["sources"]:
            if source["kind"] in ("milestone", "period"):
                found.add(source["id"])
            else:
                found.update(re.findall(r"\(([tx]-\d{3})\)", source["notes"] or ""))
        assert found == set(want["sources"]), (line, want)
