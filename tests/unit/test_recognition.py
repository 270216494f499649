"""Revenue recognition of a billing run (``accord bill``): worked examples and properties."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from test_billing_properties import PROPERTY, Raw, fold, money_pattern, scenarios

from accord.billing.engine import run_billing
from accord.billing.model import TimeAndMaterialsLine
from accord.billing.recognition import LineRevenue, recognise_run
from accord.billing.revenue import RevenueMethod
from accord.billing.scenario import parse_scenario, run_to_json
from accord.domain.money import Money

DOCS = Path(__file__).resolve().parents[2] / "docs"


def scenario(**parts: Any) -> dict[str, Any]:
    """A UK firm billing a UK customer in GBP in March 2026; ``parts`` replace sections."""
    doc: dict[str, Any] = {
        "accord_scenario": 1,
        "as_of": "2026-03-31",
        "period": {"start": "2026-03-01", "end": "2026-03-31"},
        "entities": [{"id": "uk", "country": "GB", "currency": "GBP"}],
        "accounts": [{"id": "acme", "country": "GB", "business": True}],
        "people": [{"id": "alice", "role": "senior"}],
        "rate_cards": [
            {"id": "std", "currency": "GBP", "entries": [{"role": "senior", "rate": "200.00"}]}
        ],
        "contracts": [],
        "projects": [],
    }
    doc.update(parts)
    return doc


def contract(*lines: dict[str, Any]) -> dict[str, Any]:
    return {"id": "c1", "account": "acme", "entity": "uk", "currency": "GBP", "lines": list(lines)}


def time(id_: str, project: str, day: str, hours: str, **extra: Any) -> dict[str, Any]:
    return {"id": id_, "person": "alice", "project": project, "date": day, "hours": hours, **extra}


def recognise(doc: dict[str, Any]) -> dict[str, LineRevenue]:
    world = parse_scenario(doc)
    return {line.contract_line: line for line in recognise_run(world, run_billing(world))}


def figures(line: LineRevenue) -> tuple[str, str, str, str, str]:
    """(period revenue, cumulative revenue, billed to date, asset, liability)."""
    return (
        line.period_revenue.format(),
        line.cumulative_revenue.format(),
        line.billed_to_date.format(),
        line.contract_asset.format(),
        line.contract_liability.format(),
    )


# -- right to invoice -------------------------------------------------------------------


def test_time_and_materials_revenue_is_the_value_billed_on_the_line() -> None:
    lines = recognise(
        scenario(
            contracts=[contract({"id": "tm", "model": "time_and_materials", "rate_card": "std"})],
            projects=[{"id": "p1", "contract_line": "tm"}],
            time_entries=[
                time("t1", "p1", "2026-03-02", "7.5"),  # 1,500.00
                time("t0", "p1", "2026-02-27", "1"),  # 200.00, billed now, earned in February
            ],
            prior_billed=[{"contract_line": "tm", "amount": "500.00"}],
        )
    )
    line = lines["tm"]
    assert line.method is RevenueMethod.RIGHT_TO_INVOICE
    assert figures(line) == ("1500.00", "2200.00", "2200.00", "0.00", "0.00")
    assert "approved billable work billed on the line 2200.00 GBP" in line.trace


def test_time_and_materials_never_earns_more_than_its_cap() -> None:
    tm = {"id": "tm", "model": "time_and_materials", "rate_card": "std", "cap": "1000.00"}
    doc = scenario(
        contracts=[contract(tm)],
        projects=[{"id": "p1", "contract_line": "tm"}],
        time_entries=[time("t1", "p1", "2026-03-02", "7.5")],  # 1,500.00, 500.00 written off
    )
    assert figures(recognise(doc)["tm"]) == ("1000.00", "1000.00", "1000.00", "0.00", "0.00")
    # Billed beyond the cap by an earlier run: revenue stops at the cap, the rest is deferred.
    doc["prior_billed"] = [{"contract_line": "tm", "amount": "1200.00"}]
    line = recognise(doc)["tm"]
    assert figures(line) == ("0.00", "1000.00", "1200.00", "0.00", "200.00")
    assert "capped at 1000.00 GBP" in line.trace


def test_prepaid_block_fee_is_deferred_until_its_hours_are_used() -> None:
    # 6,000 billed for a 40 h block at 150; 32 h used (20 in February, 12 in March).
    lines = recognise(
        scenario(
            contracts=[
                contract(
                    {
                        "id": "blk",
                        "model": "prepaid_block",
                        "hours": "40",
                        "rate": "150.00",
                        "start": "2026-02-01",
                    }
                )
            ],
            projects=[{"id": "help", "contract_line": "blk"}],
            time_entries=[
                time("t1", "help", "2026-02-20", "20", billed=True),
                time("t2", "help", "2026-03-12", "12"),
            ],
            prior_billed=[{"contract_line": "blk", "amount": "6000.00"}],
        )
    )
    line = lines["blk"]
    assert line.method is RevenueMethod.RIGHT_TO_INVOICE
    assert figures(line) == ("1800.00", "4800.00", "6000.00", "0.00", "1200.00")
    assert "32 of the 40 h block used × 150.00 = 4800.00 GBP" in line.trace


def test_prepaid_block_billed_now_with_overage_earns_the_hours_used() -> None:
    block = {"id": "blk", "model": "prepaid_block", "hours": "10", "rate": "100.00"}
    block["overage_rate"] = "120.00"
    lines = recognise(
        scenario(
            contracts=[contract(block)],
            projects=[{"id": "help", "contract_line": "blk"}],
            time_entries=[time("t1", "help", "2026-03-05", "12")],  # 10 h in the block, 2 over
        )
    )
    # fee 1,000 + overage 240 billed now; all 12 h used: 1,000 + 240 earned.
    assert figures(lines["blk"]) == ("1240.00", "1240.00", "1240.00", "0.00", "0.00")


def test_usage_earns_the_charge_for_the_period() -> None:
    usage = {
        "id": "api",
        "model": "usage",
        "pricing": "graduated",
        "tiers": [{"up_to": "100", "unit_price": "1.00"}, {"unit_price": "0.80"}],
    }
    lines = recognise(
        scenario(
            contracts=[contract(usage)],
            usage=[
                {"contract_line": "api", "date": "2026-03-20", "quantity": "250"},
                {"contract_line": "api", "date": "2026-02-20", "quantity": "999"},  # not March
            ],
        )
    )
    assert figures(lines["api"]) == ("220.00", "220.00", "220.00", "0.00", "0.00")


# -- cost to cost and percent complete --------------------------------------------------

PROGRESS_LINE = {
    "id": "fix",
    "model": "fixed_progress",
    "amount": "50000.00",
    "estimated_cost": "40000.00",
}


def test_cost_to_cost_revenue_ahead_of_billing_is_a_contract_asset() -> None:
    # Price 50,000, estimated cost 40,000, 26,000 spent → cumulative 32,500.
    # Billed 30 % before and 50 − 30 = 20 % now: 15,000 + 10,000 = 25,000 → asset 7,500.
    lines = recognise(
        scenario(
            contracts=[contract(PROGRESS_LINE)],
            progress=[
                {
                    "contract_line": "fix",
                    "date": "2026-02-28",
                    "percent_complete": "30",
                    "cost_to_date": "10000.00",
                },
                {
                    "contract_line": "fix",
                    "date": "2026-03-31",
                    "percent_complete": "50",
                    "cost_to_date": "26000.00",
                },
            ],
            prior_billed=[{"contract_line": "fix", "percent": "30"}],
        )
    )
    line = lines["fix"]
    assert line.method is RevenueMethod.COST_TO_COST
    # February's 10,000 of cost earned 12,500; March earns the rest.
    assert figures(line) == ("20000.00", "32500.00", "25000.00", "7500.00", "0.00")
    assert "26000.00 cost to date on 2026-03-31 / 40000.00 estimated cost" in line.trace
    assert "contract asset 7500.00 GBP" in line.trace


def test_estimated_cost_and_cost_to_date_reach_the_world() -> None:
    world = parse_scenario(
        scenario(
            contracts=[contract(PROGRESS_LINE)],
            progress=[
                {
                    "contract_line": "fix",
                    "date": "2026-03-31",
                    "percent_complete": "50",
                    "cost_to_date": "26000.00",
                }
            ],
        )
    )
    (line,) = world.contracts[0].lines
    assert str(getattr(line, "estimated_cost", None)) == "40000.00"
    assert str(world.progress[0].cost_to_date) == "26000.00"


def test_without_costs_a_progress_line_earns_its_latest_percent_complete() -> None:
    lines = recognise(
        scenario(
            contracts=[contract({"id": "fix", "model": "fixed_progress", "amount": "50000.00"})],
            progress=[
                {"contract_line": "fix", "date": "2026-02-28", "percent_complete": "20"},
                {"contract_line": "fix", "date": "2026-03-31", "percent_complete": "35"},
                {"contract_line": "fix", "date": "2026-04-02", "percent_complete": "90"},
            ],
            prior_billed=[{"contract_line": "fix", "percent": "20"}],
        )
    )
    line = lines["fix"]
    assert line.method is RevenueMethod.MILESTONE  # the output method
    assert figures(line) == ("7500.00", "17500.00", "17500.00", "0.00", "0.00")
    assert line.trace.startswith("output method: 35 % complete on 2026-03-31")


# -- milestones --------------------------------------------------------------------------


def test_accepted_milestone_is_revenue_when_accepted() -> None:
    line_in = {
        "id": "ms",
        "model": "fixed_milestone",
        "amount": "50000.00",
        "milestones": [
            {"id": "m1", "percent": "30"},
            {"id": "m2", "percent": "40"},
            {"id": "m3", "percent": "30"},
        ],
    }
    lines = recognise(
        scenario(
            contracts=[contract(line_in)],
            milestones=[
                {"id": "m1", "status": "billed", "date": "2026-02-10"},
                {"id": "m2", "status": "accepted", "date": "2026-03-10"},
                {"id": "m3", "status": "reached", "date": "2026-03-20"},  # awaiting acceptance
            ],
        )
    )
    line = lines["ms"]
    assert line.method is RevenueMethod.MILESTONE
    assert figures(line) == ("20000.00", "35000.00", "35000.00", "0.00", "0.00")
    assert "m1 15000.00 + m2 20000.00 = 35000.00 GBP" in line.trace


def test_expenses_billed_on_a_milestone_line_are_earned_as_billed() -> None:
    line_in = {
        "id": "ms",
        "model": "fixed_milestone",
        "amount": "1000.00",
        "milestones": [{"id": "m1", "percent": "100"}],
    }
    expense = {
        "id": "e1",
        "person": "alice",
        "project": "p1",
        "date": "2026-03-03",
        "amount": "80.00",
        "currency": "GBP",
    }
    lines = recognise(
        scenario(
            contracts=[contract(line_in)],
            projects=[{"id": "p1", "contract_line": "ms"}],
            expenses=[expense],
        )
    )
    assert figures(lines["ms"]) == ("80.00", "80.00", "80.00", "0.00", "0.00")


# -- ratable -----------------------------------------------------------------------------

SUBSCRIPTION = {"id": "sub", "model": "recurring", "amount": "1000.00"}


def test_monthly_fee_is_earned_by_the_day_over_the_period() -> None:
    line = recognise(scenario(contracts=[contract(SUBSCRIPTION)]))["sub"]
    assert line.method is RevenueMethod.RATABLE
    assert figures(line) == ("1000.00", "1000.00", "1000.00", "0.00", "0.00")
    # Invoiced on the 15th for the whole month: 15 of 31 days are earned, the rest deferred.
    line = recognise(scenario(contracts=[contract(SUBSCRIPTION)], as_of="2026-03-15"))["sub"]
    assert figures(line) == ("483.87", "483.87", "1000.00", "0.00", "516.13")


def test_fee_starting_mid_period_is_earned_over_its_active_days() -> None:
    line_in = {**SUBSCRIPTION, "start": "2026-03-16"}
    line = recognise(scenario(contracts=[contract(line_in)]))["sub"]
    assert figures(line) == ("516.13", "516.13", "516.13", "0.00", "0.00")
    assert "1000.00 × 16/31 days = 516.13 over 2026-03-16..2026-03-31" in line.trace


def test_managed_service_earns_its_fee_by_the_day_and_its_overage_as_used() -> None:
    line_in = {
        "id": "mg",
        "model": "managed_service",
        "fee": "5000.00",
        "included_hours": "40",
        "overage_rate": "130.00",
    }
    doc = scenario(
        contracts=[contract(line_in)],
        projects=[{"id": "ops", "contract_line": "mg"}],
        time_entries=[
            time("t1", "ops", "2026-03-05", "30"),
            time("t2", "ops", "2026-03-09", "16.5"),  # 6.5 h over × 130 = 845.00
        ],
    )
    line = recognise(doc)["mg"]
    assert line.method is RevenueMethod.RATABLE
    assert figures(line) == ("5845.00", "5845.00", "5845.00", "0.00", "0.00")
    # On the 10th: 10/31 of the fee plus all of the overage; the whole fee is billed.
    line = recognise({**doc, "as_of": "2026-03-10"})["mg"]
    assert figures(line) == ("2457.90", "2457.90", "5845.00", "0.00", "3387.10")


# -- the JSON document ---------------------------------------------------------------------


def test_json_has_revenue_only_when_given_the_world() -> None:
    doc = scenario(
        contracts=[contract(SUBSCRIPTION)],
        prior_billed=[{"contract_line": "sub", "amount": "400.00"}],
    )
    world = parse_scenario(doc)
    run = run_billing(world)
    plain = run_to_json(run)
    full = run_to_json(run, world=world)
    assert "revenue" not in plain
    assert {k: v for k, v in full.items() if k != "revenue"} == plain
    assert full["revenue"] == [
        {
            "contract": "c1",
            "contract_line": "sub",
            "method": "ratable",
            "currency": "GBP",
            "period_start": "2026-03-01",
            "period_end": "2026-03-31",
            "period_revenue": "1000.00",
            "cumulative_revenue": "1000.00",
            "billed_to_date": "1000.00",
            "contract_asset": "0.00",
            "contract_liability": "0.00",
            "trace": "ratable: 1000.00 × 31/31 days = 1000.00 over 2026-03-01..2026-03-31, "
            "31/31 days elapsed = 1000.00 GBP; billed 400.00 before + 600.00 now = 1000.00 GBP",
        }
    ]


def test_revenue_page_shows_the_real_output_of_its_example() -> None:
    text = (DOCS / "revenue.md").read_text()
    section = text.split("## Revenue in `accord bill`", 1)[1]
    raw = yaml.safe_load(re.findall(r"```yaml\n(.*?)```", section, flags=re.S)[0])
    shown = json.loads(re.findall(r"```json\n(.*?)```", section, flags=re.S)[0])
    world = parse_scenario(raw)
    assert run_to_json(run_billing(world), world=world)["revenue"] == shown["revenue"]


# -- properties ---------------------------------------------------------------------------


def check_balances(raw: Raw) -> list[LineRevenue]:
    world = parse_scenario(copy.deepcopy(raw))
    run = run_billing(world)
    revenue = list(recognise_run(world, run))
    lines = [(c, line) for c in world.contracts for line in c.lines]
    assert [(r.contract, r.contract_line) for r in revenue] == [(c.id, ln.id) for c, ln in lines]
    billed_now: dict[str, int] = {}
    for inv in run.invoices:
        for item in inv.lines:
            billed_now[item.contract_line] = (
                billed_now.get(item.contract_line, 0) + item.amount.minor
            )
    for r, (c, line) in zip(revenue, lines, strict=True):
        amounts = (
            r.period_revenue,
            r.cumulative_revenue,
            r.billed_to_date,
            r.contract_asset,
            r.contract_liability,
        )
        assert all(a.currency == c.currency == r.currency for a in amounts)
        assert not (r.contract_asset.minor > 0 and r.contract_liability.minor > 0), r
        assert min(r.contract_asset.minor, r.contract_liability.minor) == 0, r
        assert r.cumulative_revenue - r.billed_to_date == r.contract_asset - r.contract_liability
        assert r.billed_to_date.minor >= billed_now.get(r.contract_line, 0)
        if isinstance(line, TimeAndMaterialsLine):
            # Right to invoice: what is billed is earned, up to the cap.
            expected = r.billed_to_date
            if line.cap is not None:
                expected = min(expected, Money.from_decimal(line.cap, c.currency))
            assert r.cumulative_revenue == expected, r
    doc = run_to_json(run, world=world)
    for item in doc["revenue"]:
        for key in (
            "period_revenue",
            "cumulative_revenue",
            "billed_to_date",
            "contract_asset",
            "contract_liability",
        ):
            assert money_pattern(item["currency"]).fullmatch(item[key]), (key, item)
    return revenue


@PROPERTY
@given(scenarios())
def test_asset_and_liability_are_never_both_positive_and_net_revenue_less_billed(
    raw: Raw,
) -> None:
    check_balances(raw)


@PROPERTY
@given(scenarios(expenses_on=("time_and_materials",)))
def test_folding_a_run_into_the_world_leaves_revenue_and_balances_unchanged(raw: Raw) -> None:
    """Billing in one run or in two: what is earned and billed to date stays the same."""
    first = check_balances(raw)
    world = parse_scenario(copy.deepcopy(raw))
    again = check_balances(fold(raw, run_billing(world)))

    def balances(lines: list[LineRevenue]) -> list[tuple[Money, ...]]:
        return [
            (r.cumulative_revenue, r.billed_to_date, r.contract_asset, r.contract_liability)
            for r in lines
        ]

    assert balances(again) == balances(first)


@pytest.mark.parametrize(
    "path", sorted((DOCS.parent / "examples").glob("*.yaml")), ids=lambda p: p.name
)
def test_every_example_reports_revenue_for_every_contract_line(path: Path) -> None:
    raw = yaml.safe_load(path.read_text())
    revenue = check_balances(raw)
    assert len(revenue) == sum(len(c["lines"]) for c in raw["contracts"])
