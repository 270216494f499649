"""The store on a real PostgreSQL server, and compared with SQLite.

The behaviour suite in ``tests/unit/test_store.py`` already runs every store
test on both backends. This module covers what only shows with a server:
that both backends get the same schema from the same migrations, that a
``postgresql://`` URL from ``ACCORD_DATABASE_URL`` is all it takes, that time
zones of the session do not leak into the data, and that concurrent workers
pass over each other's rows instead of waiting for them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import DateTime, Engine, inspect

from accord.store import (
    Inbox,
    InboxStatus,
    Records,
    append,
    current_revision,
    head_revision,
    make_engine,
    upgrade,
    verify,
)


@pytest.fixture
def pg(postgres_url: str) -> Iterator[Engine]:
    engine = make_engine(postgres_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def _schema(engine: Engine) -> dict[str, Any]:
    """Everything about the tables that must not differ between backends."""
    inspector = inspect(engine)
    schema: dict[str, Any] = {}
    for table in sorted(inspector.get_table_names()):
        columns = {
            column["name"]: (column["type"].python_type, column["nullable"])
            for column in inspector.get_columns(table)
        }
        pk = inspector.get_pk_constraint(table)
        schema[table] = {
            "columns": columns,
            "primary key": (pk["name"], tuple(pk["constrained_columns"])),
            "unique": sorted(
                (u["name"], tuple(u["column_names"]))
                for u in inspector.get_unique_constraints(table)
            ),
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                for i in inspector.get_indexes(table)
                # PostgreSQL also lists the index behind each unique constraint.
                if not i.get("duplicates_constraint")
            ),
            "foreign keys": sorted(
                (f["name"], tuple(f["constrained_columns"]), f["referred_table"])
                for f in inspector.get_foreign_keys(table)
            ),
            "checks": sorted(c["name"] for c in inspector.get_check_constraints(table)),
        }
    return schema


def test_migrations_create_the_same_schema_on_sqlite_and_postgresql(
    pg: Engine, tmp_path: Path
) -> None:
    lite = make_engine(f"sqlite:///{tmp_path / 'accord.db'}")
    try:
        upgrade(lite)
        sqlite_schema, postgres_schema = _schema(lite), _schema(pg)
    finally:
        lite.dispose()
    # alembic_version's key is named differently by each backend's reflection.
    sqlite_schema.pop("alembic_version")
    postgres_schema.pop("alembic_version")
    assert postgres_schema == sqlite_schema
    assert set(postgres_schema) == {
        "records",
        "record_versions",
        "xref",
        "inbox",
        "inbox_frontier",
        "effects",
        "exceptions",
        "audit_log",
        "audit_head",
        "echo_records",
        "quota_usage",
        "quota_state",
        "reconcile_runs",
        "reconcile_discrepancies",
        "cursors",
        "api_keys",
        "api_idempotency",
        "exception_actions",
    }
    assert postgres_schema["inbox"]["unique"] == [
        ("uq_inbox_system_event_id", ("system", "event_id"))
    ]
    assert postgres_schema["xref"]["unique"] == [
        ("uq_xref_system_external_object_external_id", ("system", "external_object", "external_id"))
    ]


def test_every_postgresql_timestamp_column_is_timestamptz(pg: Engine) -> None:
    inspector = inspect(pg)
    stamps = [
        (table, column["name"], column["type"].timezone)
        for table in inspector.get_table_names()
        for column in inspector.get_columns(table)
        if isinstance(column["type"], DateTime)
    ]
    assert stamps and all(timezone for _, _, timezone in stamps), stamps


def test_a_plain_postgresql_url_in_the_environment_is_all_it_takes(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACCORD_DATABASE_URL", postgres_url.replace("+psycopg", ""))
    engine = make_engine()
    try:
        assert (engine.dialect.name, engine.dialect.driver) == ("postgresql", "psycopg")
        upgrade(engine)
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_session_time_zone_does_not_leak_into_timestamps(pg: Engine) -> None:
    written = datetime(2025, 3, 3, 23, 30, 0, 250_000, tzinfo=UTC)
    with pg.begin() as conn:
        conn.exec_driver_sql("SET TIME ZONE 'Pacific/Auckland'")
        Records(conn, lambda: written).put("account", "A1", {"n": 1}, system="crm", actor="x")
        record = Records(conn).get("account", "A1")
        append(conn, actor="a", action="b", subject="c", at=written)
        report = verify(conn)
    assert record is not None
    assert record.updated_at == written and record.updated_at.tzinfo is UTC
    assert report.ok, str(report)


def test_a_claimer_skips_events_another_worker_holds_instead_of_waiting(pg: Engine) -> None:
    with pg.begin() as conn:
        inbox = Inbox(conn)
        for i in range(20):
            inbox.accept("stripe", f"e{i:02}", event_type="t", payload={})
    holder = pg.connect()
    try:
        tx = holder.begin()
        held = [event.seq for event in Inbox(holder).claim_batch(10)]  # locked, uncommitted

        def other_worker() -> tuple[list[int], float]:
            started = time.monotonic()
            with pg.begin() as conn:
                seqs = [event.seq for event in Inbox(conn).claim_batch(10)]
            return seqs, time.monotonic() - started

        with ThreadPoolExecutor(1) as pool:
            seqs, waited = pool.submit(other_worker).result(timeout=10)
        tx.commit()
    finally:
        holder.close()
    assert set(seqs).isdisjoint(held) and len(seqs) == 10
    assert waited < 2, f"the second claimer waited {waited:.1f}s for the first"


def test_a_redelivery_storm_stores_each_event_once(pg: Engine) -> None:
    events = [f"evt_{i}" for i in range(20)]
    barrier = threading.Barrier(8)

    def deliver_all(_: int) -> int:
        barrier.wait(timeout=10)
        accepted = 0
        for event_id in events:
            with pg.begin() as conn:
                accepted += Inbox(conn).accept(
                    "stripe", event_id, event_type="charge.succeeded", payload={}
                )
        return accepted

    with ThreadPoolExecutor(8) as pool:
        total = sum(pool.map(deliver_all, range(8)))
    assert total == len(events)
    with pg.connect() as conn:
        assert Inbox(conn).counts()[InboxStatus.PENDING] == len(events)


def test_an_expired_lease_on_postgresql_hands_the_event_to_the_next_worker(pg: Engine) -> None:
    now = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
    with pg.begin() as conn:
        Inbox(conn, lambda: now).accept("stripe", "e1", event_type="t", payload={})
        (first,) = Inbox(conn, lambda: now).claim_batch(1, lease=timedelta(seconds=30))
    later = now + timedelta(seconds=31)
    with pg.begin() as conn:
        (second,) = Inbox(conn, lambda: later).claim_batch(1)
    assert (first.seq, second.seq, second.attempts) == (first.seq, first.seq, 2)
