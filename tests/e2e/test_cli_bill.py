"""``accord bill`` driven as a user would: a real process, real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def accord(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "accord.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_examples_cover_every_contract_model() -> None:
    text = "\n".join(p.read_text() for p in EXAMPLES)
    for model in (
        "time_and_materials",
        "fixed_milestone",
        "fixed_progress",
        "managed_service",
        "recurring",
        "usage",
        "prepaid_block",
    ):
        assert f"model: {model}" in text, model
    for pricing in ("graduated", "volume", "package"):
        assert f"pricing: {pricing}" in text, pricing


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_bills_and_balances(path: Path) -> None:
    result = accord("bill", str(path), "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["invoices"]
    for invoice in out["invoices"]:
        lines = invoice["lines"]
        assert lines
        net = sum(float(0) + 0 for _ in ()) if False else None  # noqa: F841 - keep Decimal below
        from decimal import Decimal

        assert sum(Decimal(ln["amount"]) for ln in lines) == Decimal(invoice["net"])
        assert Decimal(invoice["net"]) + Decimal(invoice["tax"]) == Decimal(invoice["gross"])
        assert all(ln["trace"] and ln["sources"] for ln in lines)


def test_consulting_month_totals_to_the_cent() -> None:
    out = json.loads(accord("bill", str(ROOT / "examples/consulting-month.yaml"), "--json").stdout)
    totals = {
        i["contract"]: (i["currency"], i["net"], i["tax"], i["gross"]) for i in out["invoices"]
    }
    assert totals == {
        "nw-2026": ("USD", "2500.00", "0.00", "2500.00"),
        "bl-2026": ("GBP", "29845.00", "5969.00", "35814.00"),
        "kw-2026": ("EUR", "4069.26", "0.00", "4069.26"),
    }
    assert [(h["source"], h["amount"]) for h in out["held"]] == [
        ("t-002", "807.50"),
        ("x-001", "433.13"),
        ("t-003", "1040.00"),
    ]
    kw = next(i for i in out["invoices"] if i["contract"] == "kw-2026")
    assert kw["reverse_charge"] is True and kw["customer_tax_id"] == "DE123456789"


def test_readable_output_shows_lines_traces_and_totals() -> None:
    result = accord("bill", str(ROOT / "examples/domain-part4.yaml"))
    assert result.returncode == 0, result.stderr
    assert "Invoice · contract c1" in result.stdout
    assert "person alice + project p1" in result.stdout
    assert "34036.13 EUR" in result.stdout
    assert "Written off" in result.stdout


BAD = {
    "negative hours": (
        "time_entries:\n  - {id: t9, person: alice, project: p1, date: 2026-03-02, hours: '-1'}",
        "time_entries[t9].hours",
    ),
    "unknown person": (
        "time_entries:\n  - {id: t9, person: zed, project: p1, date: 2026-03-02, hours: '1'}",
        "time_entries[t9].person",
    ),
    "bad date": (
        "time_entries:\n  - {id: t9, person: alice, project: p1, date: 2026-02-30, hours: '1'}",
        "time_entries[t9].date",
    ),
    "unknown model": ("", "contracts[c1].lines[bad].model"),
    "missing fx": (
        "expenses:\n  - {id: e9, person: alice, project: p1, date: 2026-03-02, amount: '5.00',"
        " currency: JPY}",
        "expenses[e9]",
    ),
}

BASE = """\
accord_scenario: 1
as_of: 2026-03-31
entities: [{id: uk, country: GB, currency: GBP}]
accounts: [{id: acme, country: GB}]
people: [{id: alice, role: senior}]
rate_cards: [{id: std, currency: GBP, entries: [{default: true, rate: "100"}]}]
contracts:
  - id: c1
    account: acme
    entity: uk
    currency: GBP
    lines: [{id: tm, model: time_and_materials, rate_card: std}]
projects: [{id: p1, contract_line: tm}]
"""


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_scenario_exits_non_zero_naming_record_and_field(
    case: str, tmp_path: Path
) -> None:
    extra, expected = BAD[case]
    text = BASE + extra + "\n"
    if case == "unknown model":
        text = text.replace(
            "model: time_and_materials, rate_card: std", "model: time_and_money, rate_card: std"
        ).replace("id: tm,", "id: bad,")
        text = text.replace("contract_line: tm", "contract_line: bad")
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = accord("bill", str(path), "--json")
    assert result.returncode != 0
    assert result.stdout == ""
    assert expected in result.stderr, result.stderr


def test_unreadable_and_non_yaml_files_are_refused(tmp_path: Path) -> None:
    missing = accord("bill", str(tmp_path / "nope.yaml"))
    assert missing.returncode != 0 and "cannot read" in missing.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("accord_scenario: 1\nas_of: [unclosed\n")
    result = accord("bill", str(broken))
    assert result.returncode != 0 and "line" in result.stderr and result.stdout == ""


def test_unknown_key_is_refused_rather_than_ignored(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text(
        BASE + "time_entries:\n  - {id: t1, person: alice, project: p1, "
        "date: 2026-03-02, houres: '1'}\n"
    )
    result = accord("bill", str(path))
    assert result.returncode != 0
    assert "time_entries[t1]" in result.stderr and "houres" in result.stderr


def test_json_adds_revenue_per_contract_line_and_leaves_the_other_keys_as_they_were() -> None:
    from accord.billing.scenario import load_scenario, run_to_json, simulate

    path = ROOT / "examples/blocks-progress-and-adjustments.yaml"
    result = accord("bill", str(path), "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    revenue = out.pop("revenue")
    assert out == run_to_json(simulate(load_scenario(path)))
    by_line = {r["contract_line"]: r for r in revenue}
    assert list(by_line) == ["fen-block", "fen-fixed", "fen-tm"]
    block = by_line["fen-block"]
    assert (block["method"], block["cumulative_revenue"], block["billed_to_date"]) == (
        "right_to_invoice",
        "6600.00",
        "6600.00",
    )
    assert by_line["fen-fixed"]["period_revenue"] == "7500.00"


def test_readable_output_ends_with_a_revenue_table() -> None:
    result = accord("bill", str(ROOT / "examples/domain-part4.yaml"))
    assert result.returncode == 0, result.stderr
    assert "Revenue · contract c1 · EUR" in result.stdout
    assert "c1-sub: ratable: 1000.00 × 16/31 days = 516.13" in result.stdout


@pytest.mark.parametrize("vendor", ["recorder", "stripe", "harvest", "salesforce"])
def test_sandbox_serve_answers_on_loopback_until_stopped(vendor: str) -> None:
    import re
    import signal
    import time

    import httpx

    proc = subprocess.Popen(
        [sys.executable, "-m", "accord.cli", "sandbox", "serve", vendor],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        url = re.search(r"http://127\.0\.0\.1:\d+\S*", line)
        assert url, line
        deadline = time.monotonic() + 10
        while True:
            try:
                status = httpx.get(url.group(0).rstrip("/") + "/", timeout=2).status_code
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert status in (200, 401, 404)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=15)  # waits and closes the pipes
    assert proc.returncode == 0
