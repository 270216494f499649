"""The reconciliation schedule switched on by the hub: a DBOS scheduled workflow that runs pairs."""

from __future__ import annotations

import time
from pathlib import Path

from dbos import DBOS

from accord.bootstrap import build_hub
from accord.config import Settings
from accord.reconcile.schedule import SCHEDULE_NAME
from accord.reconcile.store import ReconcileRuns


def _exports(tmp_path: Path) -> None:
    (tmp_path / "crm.csv").write_text(
        "id,legal_name,domain,default_currency,payment_terms_days,credit_limit,status\n"
        "a1,Acme,acme.com,EUR,30,1000.00,active\n"
        "a2,Globex,globex.com,USD,30,0,active\n"
    )
    (tmp_path / "erp.csv").write_text(
        "id,legal_name,domain,default_currency,payment_terms_days,credit_limit,status\n"
        "a1,Acme,acme.com,EUR,30,1000.00,active\n"
    )


def _settings(tmp_path: Path, schedule: str | None) -> Settings:
    return Settings.model_validate(
        {
            "database_url": f"sqlite:///{tmp_path / 'accord.db'}",
            "reconcile": {
                "schedule": schedule,
                "pairs": ["accounts"],
                "sources": {
                    "accounts": {
                        "left": {"file": str(tmp_path / "crm.csv")},
                        "right": {"file": str(tmp_path / "erp.csv")},
                    }
                },
            },
        }
    )


def test_the_hub_applies_the_schedule_and_a_firing_runs_and_stores_each_pair(
    tmp_path: Path,
) -> None:
    _exports(tmp_path)
    hub = build_hub(_settings(tmp_path, "* * * * * *")).start(dispatch=False)
    try:
        schedule = DBOS.get_schedule(SCHEDULE_NAME)
        assert schedule is not None
        assert schedule["schedule"] == "* * * * * *"
        assert schedule["context"] == {"pairs": ["accounts"]}

        DBOS.trigger_schedule(SCHEDULE_NAME).get_result()

        with hub.engine.connect() as conn:
            runs = ReconcileRuns(conn).list("accounts")
        assert runs, "the firing stored no run"
        latest = runs[0]
        assert latest.counts["missing"] == 1
        assert latest.left_rows == 2 and latest.right_rows == 1

        # and the cron fires by itself, every second
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with hub.engine.connect() as conn:
                if len(ReconcileRuns(conn).list("accounts")) > len(runs):
                    break
            time.sleep(0.2)
        else:
            raise AssertionError("the schedule did not fire within 15 s")
    finally:
        hub.stop()


def test_without_a_schedule_none_is_applied(tmp_path: Path) -> None:
    _exports(tmp_path)
    hub = build_hub(_settings(tmp_path, None)).start(dispatch=False)
    try:
        assert DBOS.get_schedule(SCHEDULE_NAME) is None
    finally:
        hub.stop()
