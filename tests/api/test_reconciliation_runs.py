"""Stored reconciliation runs through the API: the list, one run with its discrepancies."""

from __future__ import annotations

from accord.reconcile.store import ReconcileRuns
from tests.api.conftest import Api


def test_runs_are_listed_and_a_run_shows_its_discrepancies(api: Api) -> None:
    with api.engine.begin() as conn:
        runs = ReconcileRuns(conn)
        runs.start("run-1", "invoices", left="stripe", right="netsuite")
        found = [
            runs.row(
                key="INV-7",
                category="amount_mismatch",
                field="gross",
                left="120.00",
                right="110.00",
                owner="stripe",
                fix={"action": "write", "target": "netsuite"},
                state="exception",
            )
        ]
        counts = {"missing": 0, "orphan": 0, "field_mismatch": 0}
        counts.update({"amount_mismatch": 1, "status_mismatch": 0})
        runs.finish(
            "run-1",
            left_rows=10,
            right_rows=10,
            counts=counts,
            totals={"agree": False},
            discrepancies=found,
        )
    listed = api.client.get("/v1/reconciliation/runs", headers=api.headers("auditor"))
    assert listed.status_code == 200
    (run,) = listed.json()
    assert (run["id"], run["pair"], run["left_name"], run["right_name"]) == (
        "run-1",
        "invoices",
        "stripe",
        "netsuite",
    )
    assert run["counts"]["amount_mismatch"] == 1 and run["left_rows"] == 10
    detail = api.client.get("/v1/reconciliation/runs/run-1", headers=api.headers("finance"))
    assert detail.status_code == 200
    (item,) = detail.json()["discrepancies"]
    assert (item["key"], item["field"], item["left"], item["right"]) == (
        "INV-7",
        "gross",
        "120.00",
        "110.00",
    )
    missing = api.client.get("/v1/reconciliation/runs/nope", headers=api.headers("finance"))
    assert missing.status_code == 404
