"""DBOS's workflow log on SQLite with prepared statements (accord.runtime.dbos_sqlite).

A hub runs its batches with and without them; what reaches SQLite must be the
same statements with the same parameters, and DBOS's outcome rules must hold.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dbos._dbos import _get_dbos_instance
from dbos._sys_db_sqlite import SQLiteSystemDatabase
from sqlalchemy import Engine, event

from accord.bootstrap import build_hub, system_database_url
from accord.config import Settings
from accord.ownership import load_policy
from accord.runtime import dbos_sqlite
from accord.runtime.dbos_sqlite import HOT, active, supported, use_prepared

WORKFLOW_TABLES = re.compile(r"\b(workflow_status|workflow_input|workflow_output)\b")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


POLICY = load_policy(
    """
ownership:
  systems: {crm: crm}
  account: {owner: crm}
"""
)


@pytest.fixture(autouse=True)
def restore() -> Iterator[None]:
    yield
    use_prepared(True)  # what a started hub sets by default


def account(i: int) -> dict[str, Any]:
    return {
        "entity_type": "account",
        "external_object": "Account",
        "external_id": f"001{i:06d}",
        "fields": {"legal_name": f"Customer {i} Ltd"},
    }


def masked(value: Any) -> Any:
    """Values that differ from run to run by design: DBOS's execution tokens, times."""
    if isinstance(value, str) and UUID.match(value):
        return "<uuid>"
    if isinstance(value, int) and value > 10**12:
        return "<epoch ms>"
    return value


def run_hub(directory: Path, *, prepared: bool) -> list[tuple[str, tuple[Any, ...]]]:
    """Three batches through a started hub; the workflow-log statements SQLite ran."""
    settings = Settings.model_validate(
        {
            "database_url": f"sqlite:///{directory / 'accord.db'}",
            "runtime": {"prepared_workflow_statements": prepared},
        }
    )
    hub = build_hub(settings, vendors={}, routes=[], policy=POLICY)
    seen: list[tuple[str, tuple[Any, ...]]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if WORKFLOW_TABLES.search(statement) and statement.lstrip().upper().startswith(
            ("INSERT", "UPDATE")
        ):
            seen.append((statement, tuple(masked(p) for p in parameters)))

    event.listen(Engine, "before_cursor_execute", capture)
    try:
        with hub:
            for batch in range(3):
                for i in range(batch * 10, batch * 10 + 10):
                    assert hub.pipeline.ingest("crm", f"evt-{i}", "account.updated", account(i))
                assert hub.worker.drain(30)
            assert active() is prepared
            sys_db = _get_dbos_instance()._sys_db
            statements = sys_db.__dict__.get("_accord_statements", {})
            if prepared:
                names = {name for name, _columns in statements}
                assert names <= HOT
                assert {"insert_workflow_status", "insert_workflow_input"} <= names
                assert {"upsert_workflow_output"} <= names
                assert names & {"accord_workflow_outcome", "accord_workflow_outcome_owned"}
            else:
                assert statements == {}
    finally:
        event.remove(Engine, "before_cursor_execute", capture)
    return seen


def test_the_prepared_statements_are_the_statements_dbos_builds_per_call(
    tmp_path: Path,
) -> None:
    (tmp_path / "per-call").mkdir()
    (tmp_path / "prepared").mkdir()
    per_call = run_hub(tmp_path / "per-call", prepared=False)
    prepared = run_hub(tmp_path / "prepared", prepared=True)
    assert len(per_call) >= 3 * 4  # per batch: status and inputs, then outcome and output
    assert prepared == per_call


def test_workflows_end_with_their_status_and_output_in_the_log(tmp_path: Path) -> None:
    run_hub(tmp_path, prepared=True)
    url = system_database_url(f"sqlite:///{tmp_path / 'accord.db'}")
    with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
        rows = db.execute(
            "SELECT s.status, s.owner_xid, s.completed_at IS NOT NULL, o.output IS NOT NULL"
            " FROM workflow_status s JOIN workflow_output o USING (workflow_uuid)"
        ).fetchall()
    assert len(rows) == 3
    assert set(rows) == {("SUCCESS", None, 1, 1)}


def test_an_outcome_that_is_not_the_callers_to_write_writes_nothing(tmp_path: Path) -> None:
    settings = Settings.model_validate({"database_url": f"sqlite:///{tmp_path / 'accord.db'}"})
    hub = build_hub(settings, vendors={}, routes=[], policy=POLICY)
    with hub:
        assert hub.pipeline.ingest("crm", "evt-1", "account.updated", account(1))
        assert hub.worker.drain(30)
        sys_db = _get_dbos_instance()._sys_db
        with sys_db.engine.connect() as conn:
            (workflow_id,) = conn.exec_driver_sql(
                "SELECT workflow_uuid FROM workflow_status WHERE name LIKE '%process_batch%'"
            ).one()
        # already SUCCESS: neither a second outcome nor another owner's lands
        for owner in (None, "someone-else"):
            written = sys_db._update_workflow_outcome_in_transaction(
                workflow_id, "ERROR", output=None, error="late", owner_xid=owner
            )
            assert written is False
        with sys_db.engine.connect() as conn:
            status, error = conn.exec_driver_sql(
                "SELECT s.status, o.error FROM workflow_status s JOIN workflow_output o"
                " USING (workflow_uuid) WHERE workflow_uuid = ?",
                (workflow_id,),
            ).one()
        assert (status, error) == ("SUCCESS", None)


def test_switching_off_gives_dbos_its_own_methods_back() -> None:
    assert use_prepared(True) is True
    assert SQLiteSystemDatabase._execute_prepared is dbos_sqlite._execute_prepared
    assert use_prepared(False) is False
    assert "_execute_prepared" not in SQLiteSystemDatabase.__dict__
    assert "_update_workflow_outcome_in_transaction" not in SQLiteSystemDatabase.__dict__
    assert use_prepared(True) is True


@pytest.mark.parametrize(
    ("version", "expected"), [("3.4.0", True), ("3.4.7", True), ("3.5.0", False), ("2.31.1", False)]
)
def test_only_the_dbos_versions_it_was_checked_against(version: str, expected: bool) -> None:
    assert supported(version) is expected


def test_an_unchecked_dbos_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    use_prepared(False)
    monkeypatch.setattr(dbos_sqlite, "SUPPORTED", ("9.9.",))
    assert use_prepared(True) is False
    assert "_execute_prepared" not in SQLiteSystemDatabase.__dict__
