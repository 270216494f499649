"""Runs stored and queried on SQLite and PostgreSQL; the CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from accord.cli import app
from accord.ownership.policy import default_policy
from accord.reconcile.files import compare_files
from accord.reconcile.pairs import pair_named
from accord.reconcile.run import reconcile_pair, store_comparison
from accord.reconcile.sides import MemorySide
from accord.reconcile.store import ReconcileRuns
from accord.store import Exceptions, ExceptionState, make_engine, upgrade


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'accord.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    upgrade(engine)
    request.addfinalizer(engine.dispose)
    return engine


def test_a_run_and_its_discrepancies_are_stored_and_queryable(engine: Engine) -> None:
    pair = pair_named("invoices")
    left = {
        "i1": {
            "number": "1",
            "gross": 100,
            "status": "open",
            "account_id": "a",
            "period": "2025-01",
        },
        "i2": {
            "number": "2",
            "gross": 50,
            "status": "paid",
            "account_id": "a",
            "period": "2025-01",
        },
    }
    right = {
        "i1": {
            "number": "1",
            "gross": 90,
            "status": "open",
            "account_id": "a",
            "period": "2025-01",
        },
    }
    report = reconcile_pair(
        pair,
        MemorySide("stripe", left),
        MemorySide("xero", right),
        policy=default_policy(),
        engine=engine,
    )
    with engine.connect() as conn:
        runs = ReconcileRuns(conn)
        stored = runs.latest("invoices")
        assert stored is not None and stored.id == report.run_id
        assert stored.state == "finished" and (stored.left_rows, stored.right_rows) == (2, 1)
        assert stored.counts["amount_mismatch"] == 1 and stored.counts["missing"] == 1
        assert stored.totals["agree"] is False
        amounts = runs.discrepancies(report.run_id, category="amount_mismatch")
        assert [(d.key, d.field, d.left, d.right, d.owner) for d in amounts] == [
            ("i1", "gross", 100, 90, "stripe")
        ]
        assert amounts[0].state == "exception" and amounts[0].exception_id
        items = Exceptions(conn).list(role="billing", state=ExceptionState.OPEN)
        assert {i.type for i in items} == {"reconcile.amount_mismatch", "reconcile.missing"}
        assert all(i.trace_id == report.trace_id for i in items)
    again = reconcile_pair(
        pair,
        MemorySide("stripe", left),
        MemorySide("xero", right),
        policy=default_policy(),
        engine=engine,
    )
    with engine.connect() as conn:
        assert len(Exceptions(conn).list(role="billing")) == 2  # deduplicated, not doubled
        assert [r.id for r in ReconcileRuns(conn).list("invoices")] == [again.run_id, report.run_id]


def test_a_file_comparison_can_be_stored(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "l.csv").write_text("id,amount\nA,1.50\nB,2\n")
    (tmp_path / "r.csv").write_text("id,amount\nA,1.5\n")
    run_id = store_comparison(engine, compare_files(tmp_path / "l.csv", tmp_path / "r.csv", "id"))
    with engine.connect() as conn:
        rows = ReconcileRuns(conn).discrepancies(run_id)
    assert [(d.key, d.category, d.left) for d in rows] == [("B", "missing", {"amount": "2"})]


def test_cli_files_prints_json_with_counts_and_exits_one_on_drift(tmp_path: Path) -> None:
    (tmp_path / "l.csv").write_text('id,amount,status\nA,"1,000.00",open\nB,2,open\n')
    (tmp_path / "r.jsonl").write_text('{"id":"A","amount":1000,"status":"paid"}\n')
    result = CliRunner().invoke(
        app,
        [
            "reconcile",
            "files",
            str(tmp_path / "l.csv"),
            str(tmp_path / "r.jsonl"),
            "--key",
            "id",
            "--json",
        ],
    )
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert doc["counts"]["status_mismatch"] == 1 and doc["counts"]["missing"] == 1
    assert doc["discrepancies"][0] == {
        "key": "A",
        "class": "status_mismatch",
        "field": "status",
        "left": "open",
        "right": "paid",
    }


def test_cli_files_names_file_line_and_column_of_a_malformed_file(tmp_path: Path) -> None:
    (tmp_path / "l.csv").write_text("id,amount\nA\n")
    result = CliRunner().invoke(
        app, ["reconcile", "files", str(tmp_path / "l.csv"), str(tmp_path / "l.csv"), "--key", "id"]
    )
    assert result.exit_code == 2
    assert f"{tmp_path / 'l.csv'}:2: column 2 (amount)" in result.output


def test_cli_reconciles_a_configured_pair_and_stores_the_run(tmp_path: Path) -> None:
    header = "id,number,account_id,period,currency,net,tax,gross,amount_due,status\n"
    (tmp_path / "billing.csv").write_text(
        header + "I1,1,a,2025-01,EUR,10.00,2.00,12.00,12.00,open\n"
        "I2,2,a,2025-01,EUR,1.00,0,1.00,1.00,open\n"
    )
    (tmp_path / "erp.csv").write_text(header + "I1,1,a,2025-01,EUR,10,2,12,12.00,open\n")
    config = tmp_path / "accord.yaml"
    database = tmp_path / "accord.db"
    config.write_text(
        f"database_url: sqlite:///{database}\n"
        "reconcile:\n"
        "  schedule: '0 * * * *'\n"
        "  pairs: [invoices]\n"
        "  sources:\n"
        "    invoices:\n"
        f"      left: {{file: {tmp_path / 'billing.csv'}, key: id}}\n"
        f"      right: {{file: {tmp_path / 'erp.csv'}, key: id}}\n"
    )
    runner = CliRunner()
    result = runner.invoke(app, ["reconcile", "--pair", "invoices", "--json", "-c", str(config)])
    assert result.exit_code == 1, result.output
    (run,) = json.loads(result.stdout)["runs"]
    assert run["counts"]["missing"] == 1 and sum(run["counts"].values()) == 1
    assert run["discrepancies"][0]["state"] == "exception"  # invoices are review
    engine = make_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as conn:
            stored = ReconcileRuns(conn).get(run["run_id"])
        assert stored is not None and stored.counts == run["counts"]
    finally:
        engine.dispose()
    missing = runner.invoke(app, ["reconcile", "--pair", "payments", "-c", str(config)])
    assert missing.exit_code == 2 and "reconcile.sources.payments" in missing.output
