"""The store's behaviour, on a real SQLite file and (same tests) on PostgreSQL.

Every test that takes ``engine`` runs once per backend: ``sqlite`` on a file in
``tmp_path`` and ``postgresql`` on a fresh database from the ``postgres_url``
fixture (skipped visibly without a server; required when
``ACCORD_REQUIRE_SERVICES=1``). SQLite-only settings (WAL, pragmas, default
URL) are tested on SQLite alone; comparisons between the two backends live in
``tests/integration/test_store_postgres.py``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, exc, func, inspect, select, text, update

from accord.errors import InvalidInput, InvalidTransition, RuleViolation
from accord.store import (
    AuditProblem,
    Cursors,
    Effects,
    EffectStatus,
    Exceptions,
    ExceptionState,
    IdempotencyConflict,
    Inbox,
    InboxStatus,
    NotFound,
    Records,
    StaleVersion,
    Xref,
    XrefConflict,
    alembic_config,
    append,
    changed_fields,
    current_revision,
    default_url,
    entries,
    entry_hash,
    head_revision,
    make_engine,
    metadata,
    upgrade,
    verify,
)
from accord.store.tables import GENESIS_HASH, audit_head, audit_log, echo_records, inbox

T = TypeVar("T")

TABLES = {
    "api_keys",
    "api_idempotency",
    "exception_actions",
    "echo_records",
    "quota_usage",
    "quota_state",
    "reconcile_runs",
    "reconcile_discrepancies",
    "records",
    "record_versions",
    "xref",
    "inbox",
    "inbox_frontier",
    "effects",
    "exceptions",
    "audit_log",
    "audit_head",
    "cursors",
}
START = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'accord.db'}"
    postgres_url: str = request.getfixturevalue("postgres_url")
    return postgres_url


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    engine = make_engine(url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'accord.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def concurrently(count: int, work: Callable[[int], T]) -> list[T]:
    """Run ``work(i)`` in ``count`` threads released together; re-raise any error."""
    barrier = threading.Barrier(count)

    def run(i: int) -> T:
        barrier.wait(timeout=10)
        return work(i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


# --------------------------------------------------------------------------- migrations


def test_migrations_create_every_table_exactly_as_the_tables_module_defines(
    engine: Engine,
) -> None:
    assert set(inspect(engine).get_table_names()) == TABLES | {"alembic_version"}
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    assert current_revision(engine) == head_revision()


def test_upgrading_an_up_to_date_database_changes_nothing(engine: Engine) -> None:
    with engine.begin() as conn:
        Records(conn).put("account", "A1", {"name": "Acme"}, system="crm", actor="sync")
    upgrade(engine)
    with engine.connect() as conn:
        record = Records(conn).get("account", "A1")
    assert record is not None and record.data == {"name": "Acme"}


def test_the_echo_memory_moves_to_one_row_per_record_and_back(url: str) -> None:
    engine = make_engine(url)
    try:
        upgrade(engine, "0006")
        rows = [
            ("crm", "account", "A1", "legal_name", None, "d1"),
            ("erp", "account", "A1", "legal_name", "d2", "d2"),
            ("crm", "account", "A1", "seats", None, "d3"),
            ("erp", "account", "A2", "domain", "d4", "d5"),
            ("erp", "account", "A3", "domain", None, None),  # knows nothing: dropped
        ]
        with engine.begin() as conn:
            for row in rows:
                conn.execute(
                    text(
                        "INSERT INTO echo_state (system, entity_type, entity_id, field,"
                        " pending_echo, last_seen) VALUES (:s, :t, :i, :f, :p, :l)"
                    ),
                    dict(zip("stifpl", row, strict=True)),
                )
        upgrade(engine)
        with engine.connect() as conn:
            moved = {r.entity_id: r.state for r in conn.execute(select(echo_records))}
        assert moved == {
            "A1": {
                "crm": {"legal_name": [None, "d1"], "seats": [None, "d3"]},
                "erp": {"legal_name": ["d2", "d2"]},
            },
            "A2": {"erp": {"domain": ["d4", "d5"]}},
        }
        config = alembic_config()
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "0006")
        with engine.connect() as conn:
            back = conn.execute(
                text(
                    "SELECT system, entity_type, entity_id, field, pending_echo, last_seen"
                    " FROM echo_state"
                )
            ).all()
        assert sorted(tuple(r) for r in back) == sorted(rows[:4])
    finally:
        engine.dispose()


def test_inbox_numbers_and_the_audit_chain_survive_the_move_to_rowid_keys_and_back(
    url: str,
) -> None:
    engine = make_engine(url)
    config = alembic_config()

    def migrate(step: Any, revision: str) -> None:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            step(config, revision)

    def accept(event_id: str) -> int:
        with engine.begin() as conn:
            Inbox(conn).accept("crm", event_id, event_type="t", payload={"n": event_id})
            seq = conn.execute(select(inbox.c.seq).where(inbox.c.event_id == event_id))
            return int(seq.scalar_one())

    try:
        upgrade(engine, "0007")
        first, second = accept("e1"), accept("e2")
        with engine.begin() as conn:
            append(conn, actor="test", action="made", subject="x/1", data={"n": 1})
            append(conn, actor="test", action="made", subject="x/2", data={"n": 2})
        upgrade(engine)
        third = accept("e3")
        assert first < second < third
        with engine.begin() as conn:
            append(conn, actor="test", action="made", subject="x/3", data={"n": 3})
        with engine.connect() as conn:
            assert verify(conn).ok
            assert [e.seq for e in entries(conn)] == [1, 2, 3]
        migrate(command.downgrade, "0007")
        assert accept("e4") > third
        migrate(command.upgrade, "head")
        assert accept("e5") > third + 1
        with engine.connect() as conn:
            assert verify(conn).ok
            assert conn.execute(select(func.count()).select_from(inbox)).scalar() == 5
    finally:
        engine.dispose()


def test_sqlite_never_reuses_an_inbox_number(sqlite_engine: Engine) -> None:
    """Without AUTOINCREMENT, SQLite numbers a row after the highest one, so the
    newest event may not be deleted: its number would be handed out again."""
    seqs = []
    for event_id in ("e1", "e2", "e3"):
        with sqlite_engine.begin() as conn:
            Inbox(conn).accept("crm", event_id, event_type="t", payload={})
            seqs.append(conn.execute(select(func.max(inbox.c.seq))).scalar_one())
    with pytest.raises(exc.IntegrityError, match="newest inbox event is kept"):
        with sqlite_engine.begin() as conn:
            conn.execute(inbox.delete().where(inbox.c.seq == seqs[-1]))
    with sqlite_engine.begin() as conn:
        conn.execute(inbox.delete().where(inbox.c.seq < seqs[-1]))  # older ones may go
        Inbox(conn).accept("crm", "e4", event_type="t", payload={})
        assert conn.execute(select(inbox.c.seq).order_by(inbox.c.seq)).scalars().all() == [
            seqs[-1],
            seqs[-1] + 1,
        ]


def test_sqlite_carries_autoincrements_high_water_over_to_rowid_numbers(tmp_path: Path) -> None:
    """Numbers AUTOINCREMENT gave to events deleted since are not given again."""
    engine = make_engine(f"sqlite:///{tmp_path / 'accord.db'}")
    try:
        upgrade(engine, "0007")
        for event_id in ("e1", "e2", "e3"):
            with engine.begin() as conn:
                Inbox(conn).accept("crm", event_id, event_type="t", payload={})
        with engine.begin() as conn:
            conn.execute(inbox.delete().where(inbox.c.event_id.in_(["e2", "e3"])))
        upgrade(engine)
        with engine.begin() as conn:
            Inbox(conn).accept("crm", "e4", event_type="t", payload={})
            rows = conn.execute(select(inbox.c.seq, inbox.c.event_id).order_by(inbox.c.seq)).all()
            assert [tuple(r) for r in rows] == [(1, "e1"), (3, "inbox-high-water"), (4, "e4")]
            # the marker is done: never claimed
            assert Inbox(conn).claim_seqs(10, lease=timedelta(seconds=30)) == [(1, 1), (4, 1)]
    finally:
        engine.dispose()


def test_sqlite_keys_the_audit_log_by_its_rowid(sqlite_engine: Engine) -> None:
    """An INTEGER key is the table's rowid: no index of its own beside the table."""
    with sqlite_engine.begin() as conn:
        append(conn, actor="test", action="made", subject="x/1", data={})
        indexes = conn.exec_driver_sql("PRAGMA index_list(audit_log)").all()
        assert indexes == []
        assert conn.exec_driver_sql("SELECT rowid, seq FROM audit_log").all() == [(1, 1)]


def test_a_fresh_database_has_no_revision_until_upgraded(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'new.db'}")
    try:
        assert current_revision(engine) is None
        upgrade(engine)
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_the_audit_anchor_starts_at_genesis(engine: Engine) -> None:
    with engine.connect() as conn:
        assert conn.execute(select(audit_head)).all() == [(1, 0, GENESIS_HASH)]


# --------------------------------------------------------------------------- SQLite settings


def test_every_sqlite_connection_runs_in_wal_with_synchronous_normal(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    # Two connections checked out at once: the pragmas hold for each, not only the first.
    with sqlite_engine.connect() as first, sqlite_engine.connect() as second:
        for conn in (first, second):
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA cache_size").scalar() == -65_536  # 64 MiB
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 10_000


def test_wal_mode_is_stored_in_the_file_itself(sqlite_engine: Engine, tmp_path: Path) -> None:
    with sqlite_engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
    plain = sqlite3.connect(tmp_path / "accord.db")  # no Accord settings at all
    try:
        assert plain.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert plain.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL: per connection
    finally:
        plain.close()


def test_default_url_is_accord_db_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ACCORD_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_url() == f"sqlite:///{tmp_path / 'accord.db'}"


def test_accord_database_url_overrides_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCORD_DATABASE_URL", "postgresql+psycopg://u@db.example/accord")
    assert default_url() == "postgresql+psycopg://u@db.example/accord"
    assert make_engine().url.host == "db.example"  # no connection is made


def test_a_plain_postgresql_url_uses_psycopg_3_without_pre_ping() -> None:
    engine = make_engine("postgresql://u@db.example/accord")
    assert engine.dialect.driver == "psycopg"
    assert engine.pool._pre_ping is False  # type: ignore[attr-defined]


def test_naive_datetimes_are_refused(sqlite_engine: Engine) -> None:
    naive = FakeClock(datetime(2025, 3, 3, 9, 0))
    with sqlite_engine.begin() as conn, pytest.raises(InvalidInput, match="naive"):
        Records(conn, naive).put("account", "A1", {"n": 1}, system="crm", actor="x")


# --------------------------------------------------------------------------- records


def test_first_put_creates_version_one_with_every_field_changed(engine: Engine) -> None:
    with engine.begin() as conn:
        result = Records(conn).put(
            "account", "A1", {"name": "Acme", "vat": "DE1"}, system="crm", actor="sync"
        )
    assert (result.version, result.changed_fields, result.created) == (1, ("name", "vat"), True)


def test_each_change_is_a_new_version_saying_who_changed_what_from_where(
    engine: Engine, clock: FakeClock
) -> None:
    with engine.begin() as conn:
        records = Records(conn, clock)
        records.put("account", "A1", {"name": "Acme", "vat": "DE1"}, system="crm", actor="ann")
        clock.advance(minutes=5)
        second = records.put(
            "account",
            "A1",
            {"name": "Acme GmbH", "vat": "DE1", "city": "Köln"},
            system="erp",
            actor="bob",
            expected_version=1,
            trace_id="t-42",
        )
        clock.advance(minutes=5)
        third = records.put("account", "A1", {"name": "Acme GmbH"}, system="crm", actor="ann")
    assert (second.version, second.changed_fields) == (2, ("city", "name"))
    assert (third.version, third.changed_fields) == (3, ("city", "vat"))
    with engine.connect() as conn:
        current = Records(conn).get("account", "A1")
        history = Records(conn).history("account", "A1")
    assert current is not None
    assert (current.version, current.data, current.updated_by_system) == (
        3,
        {"name": "Acme GmbH"},
        "crm",
    )
    assert current.updated_at == START + timedelta(minutes=10)
    assert [(v.version, v.system, v.actor, v.changed_fields) for v in history] == [
        (1, "crm", "ann", ("name", "vat")),
        (2, "erp", "bob", ("city", "name")),
        (3, "crm", "ann", ("city", "vat")),
    ]
    assert history[1].trace_id == "t-42"
    assert history[1].data["city"] == "Köln"
    assert history[1].at == START + timedelta(minutes=5)
    assert history[1].at.tzinfo is UTC


def test_storing_the_same_data_again_writes_no_new_version(engine: Engine) -> None:
    with engine.begin() as conn:
        records = Records(conn)
        records.put("account", "A1", {"name": "Acme", "tags": ["a"]}, system="crm", actor="x")
        again = records.put(
            "account", "A1", {"tags": ("a",), "name": "Acme"}, system="erp", actor="y"
        )
        assert (again.version, again.changed, again.created) == (1, False, False)
        assert len(records.history("account", "A1")) == 1


def test_a_stale_expected_version_is_refused_and_nothing_is_written(engine: Engine) -> None:
    with engine.begin() as conn:
        records = Records(conn)
        records.put("account", "A1", {"name": "Acme"}, system="crm", actor="x")
        records.put("account", "A1", {"name": "Acme 2"}, system="crm", actor="x")
    with engine.begin() as conn, pytest.raises(StaleVersion) as refused:
        Records(conn).put(
            "account", "A1", {"name": "Old view"}, system="erp", actor="y", expected_version=1
        )
    assert "based on version 1" in str(refused.value)
    assert "holds version 2" in str(refused.value)
    assert (refused.value.expected, refused.value.found) == (1, 2)
    with engine.connect() as conn:
        record = Records(conn).get("account", "A1")
    assert record is not None and (record.version, record.data) == (2, {"name": "Acme 2"})


def test_expected_version_zero_means_the_record_must_not_exist_yet(engine: Engine) -> None:
    with engine.begin() as conn:
        records = Records(conn)
        assert records.put("account", "A1", {"n": 1}, system="crm", actor="x", expected_version=0)
        with pytest.raises(StaleVersion):
            records.put("account", "A1", {"n": 2}, system="crm", actor="x", expected_version=0)


def test_of_two_concurrent_writers_on_one_version_exactly_one_wins(engine: Engine) -> None:
    with engine.begin() as conn:
        Records(conn).put("account", "A1", {"n": 0}, system="crm", actor="x")

    def write(n: int) -> str:
        try:
            with engine.begin() as conn:
                Records(conn).put(
                    "account", "A1", {"n": n + 1}, system="crm", actor="x", expected_version=1
                )
        except StaleVersion:
            return "stale"
        return "written"

    assert sorted(concurrently(4, write)) == ["stale", "stale", "stale", "written"]
    with engine.connect() as conn:
        assert len(Records(conn).history("account", "A1")) == 2


def test_a_writer_blocked_behind_another_sees_its_version_is_stale(engine: Engine) -> None:
    with engine.begin() as conn:
        Records(conn).put("account", "A1", {"n": 0}, system="crm", actor="x")
    first = engine.connect()
    try:
        tx = first.begin()
        Records(first).put("account", "A1", {"n": 1}, system="crm", actor="a", expected_version=1)

        def second() -> None:
            with engine.begin() as conn:
                Records(conn).put(
                    "account", "A1", {"n": 2}, system="erp", actor="b", expected_version=1
                )

        with ThreadPoolExecutor(1) as pool:
            blocked = pool.submit(second)
            time.sleep(0.3)  # let it reach the lock held by the first transaction
            tx.commit()
            with pytest.raises(StaleVersion):
                blocked.result(timeout=15)
    finally:
        first.close()


def test_money_in_a_record_stays_integer_minor_units(engine: Engine) -> None:
    amount = 12_345_678_901_234_567  # beyond float precision
    with engine.begin() as conn:
        Records(conn).put(
            "invoice",
            "I1",
            {"total": {"minor": amount, "currency": "EUR"}},
            system="erp",
            actor="x",
        )
    with engine.connect() as conn:
        record = Records(conn).get("invoice", "I1")
    assert record is not None
    assert record.data["total"]["minor"] == amount
    assert type(record.data["total"]["minor"]) is int


def test_changed_fields_compares_values_as_json() -> None:
    before = {"a": 1, "b": True, "c": [1, 2], "gone": None}
    after = {"a": 1.0, "b": 1, "c": (1, 2), "new": None}
    assert changed_fields(before, after) == ("a", "b", "gone", "new")


def test_a_document_that_is_not_json_is_refused(engine: Engine) -> None:
    with engine.begin() as conn, pytest.raises(InvalidInput, match="not a JSON document"):
        Records(conn).put("account", "A1", {"at": datetime.now(UTC)}, system="crm", actor="x")


# --------------------------------------------------------------------------- xref


def test_xref_links_a_record_to_each_system_and_finds_it_both_ways(
    engine: Engine, clock: FakeClock
) -> None:
    with engine.begin() as conn:
        xref = Xref(conn, clock)
        xref.link("account", "A1", "salesforce", "Account", "001xx", etag="e1")
        xref.link("account", "A1", "xero", "Contact", "c-9")
        found = xref.by_external("salesforce", "Account", "001xx")
        assert found is not None and found.canonical_id == "A1"
        mine = xref.lookup("account", "A1", "xero")
        assert mine is not None and mine.external_id == "c-9"
        assert [link.system for link in xref.links("account", "A1")] == ["salesforce", "xero"]
        assert xref.by_external("salesforce", "Account", "nope") is None


def test_linking_the_same_pair_again_refreshes_it_and_keeps_the_etag(
    engine: Engine, clock: FakeClock
) -> None:
    with engine.begin() as conn:
        xref = Xref(conn, clock)
        xref.link("account", "A1", "salesforce", "Account", "001xx", etag="e1")
        clock.advance(hours=1)
        again = xref.link("account", "A1", "salesforce", "Account", "001xx")
        assert (again.etag, again.last_synced) == ("e1", START + timedelta(hours=1))
        stored = xref.lookup("account", "A1", "salesforce")
        assert stored == again


def test_a_record_has_one_id_per_system_and_an_external_object_one_record(
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        xref = Xref(conn)
        xref.link("account", "A1", "salesforce", "Account", "001xx")
        with pytest.raises(XrefConflict, match="already linked to salesforce Account 001xx"):
            xref.link("account", "A1", "salesforce", "Account", "002yy")
        with pytest.raises(XrefConflict, match="already linked to account A1") as clash:
            xref.link("account", "A2", "salesforce", "Account", "001xx")
        assert clash.value.existing.canonical_id == "A1"


@pytest.mark.parametrize(
    "duplicate",
    [
        # same external object, other canonical record
        ("account", "A2", "salesforce", "Account", "001xx"),
        # same canonical record and system, other external object
        ("account", "A1", "salesforce", "Account", "002yy"),
    ],
)
def test_the_database_itself_enforces_xref_uniqueness(
    engine: Engine, duplicate: tuple[str, ...]
) -> None:
    with engine.begin() as conn:
        Xref(conn).link("account", "A1", "salesforce", "Account", "001xx")
    columns = ("entity_type", "canonical_id", "system", "external_object", "external_id")
    with pytest.raises(exc.IntegrityError), engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO xref (entity_type, canonical_id, system, external_object, "
                "external_id) VALUES (:entity_type, :canonical_id, :system, "
                ":external_object, :external_id)"
            ),
            dict(zip(columns, duplicate, strict=True)),
        )


def test_mark_synced_records_the_etag_and_what_accord_wrote(
    engine: Engine, clock: FakeClock
) -> None:
    with engine.begin() as conn:
        xref = Xref(conn, clock)
        xref.link("account", "A1", "xero", "Contact", "c-9", etag="e1")
        clock.advance(minutes=1)
        xref.mark_synced("account", "A1", "xero", etag="e2", written_digest="d" * 64)
        clock.advance(minutes=1)
        xref.mark_synced("account", "A1", "xero", etag="e3")  # an inbound read
        link = xref.lookup("account", "A1", "xero")
        assert link is not None
        assert (link.etag, link.last_written_digest) == ("e3", "d" * 64)
        assert link.last_synced == START + timedelta(minutes=2)
        with pytest.raises(NotFound):
            xref.mark_synced("account", "A1", "stripe")


# --------------------------------------------------------------------------- inbox


def test_an_event_is_stored_once_and_a_redelivery_is_acknowledged_and_ignored(
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        inbox = Inbox(conn)
        assert inbox.accept("stripe", "evt_1", event_type="invoice.paid", payload={"n": 1})
        assert not inbox.accept("stripe", "evt_1", event_type="invoice.paid", payload={"n": 2})
        assert inbox.accept("xero", "evt_1", event_type="invoice.paid", payload={"n": 3})
        stored = inbox.get("stripe", "evt_1")
    assert stored is not None
    assert (stored.payload, stored.status, stored.attempts) == ({"n": 1}, InboxStatus.PENDING, 0)


def test_concurrent_deliveries_of_one_event_store_it_exactly_once(engine: Engine) -> None:
    def deliver(i: int) -> bool:
        with engine.begin() as conn:
            return Inbox(conn).accept(
                "stripe", "evt_race", event_type="charge.succeeded", payload={"delivery": i}
            )

    results = concurrently(8, deliver)
    assert results.count(True) == 1
    with engine.connect() as conn:
        assert Inbox(conn).counts()[InboxStatus.PENDING] == 1


def test_claim_batch_takes_the_oldest_due_events_under_a_lease(
    engine: Engine, clock: FakeClock
) -> None:
    with engine.begin() as conn:
        inbox = Inbox(conn, clock)
        for i in range(5):
            inbox.accept("stripe", f"e{i}", event_type="t", payload={"i": i})
        inbox.accept("xero", "x0", event_type="t", payload={})
        first = inbox.claim_batch(3, lease=timedelta(minutes=1))
        assert [e.event_id for e in first] == ["e0", "e1", "e2"]
        assert all(e.attempts == 1 for e in first)
        assert first[0].available_at == START + timedelta(minutes=1)
        rest = inbox.claim_batch(10, system="stripe")
        assert [e.event_id for e in rest] == ["e3", "e4"]
        assert inbox.claim_batch(10, system="stripe") == []
        clock.advance(minutes=2)  # the first lease ran out: the worker died
        again = inbox.claim_batch(10, system="stripe")
        assert [(e.event_id, e.attempts) for e in again] == [("e0", 2), ("e1", 2), ("e2", 2)]


def test_marking_outcomes_finishes_retries_later_or_gives_up(
    engine: Engine, clock: FakeClock
) -> None:
    with engine.begin() as conn:
        inbox = Inbox(conn, clock)
        for i in range(3):
            inbox.accept("stripe", f"e{i}", event_type="t", payload={})
        done, failed, dead = inbox.claim_batch(3)
        assert inbox.mark([done.seq], InboxStatus.DONE) == 1
        inbox.mark(failed.seq, InboxStatus.FAILED, error="502", retry_after=timedelta(seconds=30))
        inbox.mark(dead.seq, InboxStatus.DEAD, error="unmappable")
        assert inbox.counts() == {
            InboxStatus.PENDING: 0,
            InboxStatus.DONE: 1,
            InboxStatus.FAILED: 1,
            InboxStatus.DEAD: 1,
        }
        clock.advance(seconds=29)
        assert inbox.claim_batch(10) == []
        clock.advance(seconds=1)
        retried = inbox.claim_batch(10)
        assert [(e.event_id, e.attempts, e.error) for e in retried] == [("e1", 2, "502")]
        finished = inbox.get("stripe", "e0")
        assert finished is not None and finished.processed_at == START
        assert not inbox.accept("stripe", "e0", event_type="t", payload={})  # still deduped
        inbox.mark(dead.seq, InboxStatus.PENDING)  # replay after the fix
        assert [e.event_id for e in inbox.claim_batch(10)] == ["e2"]
        assert inbox.mark([], InboxStatus.DONE) == 0


def test_concurrent_claimers_never_share_an_event(engine: Engine) -> None:
    with engine.begin() as conn:
        inbox = Inbox(conn)
        for i in range(50):
            inbox.accept("stripe", f"e{i:02}", event_type="t", payload={})

    def claim(_: int) -> list[int]:
        with engine.begin() as conn:
            return [event.seq for event in Inbox(conn).claim_batch(20)]

    batches = concurrently(3, claim)
    claimed = [seq for batch in batches for seq in batch]
    assert len(claimed) == len(set(claimed)) == 50


# --------------------------------------------------------------------------- effects


def test_effect_ledger_records_intent_attempts_and_outcome(
    engine: Engine, clock: FakeClock
) -> None:
    with engine.begin() as conn:
        ledger = Effects(conn, clock)
        entry = ledger.intend(
            "k1", system="xero", operation="create_contact", request_digest="r1", trace_id="t1"
        )
        assert (entry.status, entry.attempts, entry.trace_id) == (EffectStatus.INTENT, 0, "t1")
        assert ledger.attempt("k1") == 1
        doubtful = ledger.doubt("k1", "read timeout")
        assert (doubtful.status, doubtful.error) == (EffectStatus.DOUBT, "read timeout")
        assert [e.idempotency_key for e in ledger.unsettled()] == ["k1"]
        assert ledger.attempt("k1") == 2
        clock.advance(seconds=3)
        done = ledger.complete("k1", external_id="c-9", result={"ContactID": "c-9"})
        assert (done.status, done.external_id, done.result, done.error) == (
            EffectStatus.DONE,
            "c-9",
            {"ContactID": "c-9"},
            None,
        )
        assert done.updated_at == START + timedelta(seconds=3)
        assert ledger.unsettled() == []


def test_intending_an_effect_again_returns_what_happened_last_time(engine: Engine) -> None:
    with engine.begin() as conn:
        ledger = Effects(conn)
        ledger.intend("k1", system="xero", operation="op", request_digest="r1")
        ledger.attempt("k1")
        ledger.complete("k1", external_id="c-9")
        again = ledger.intend("k1", system="xero", operation="op", request_digest="r1")
        assert (again.status, again.external_id, again.attempts) == (EffectStatus.DONE, "c-9", 1)
        with pytest.raises(IdempotencyConflict):
            ledger.intend("k1", system="xero", operation="op", request_digest="other")


def test_concurrent_intents_record_one_entry(engine: Engine) -> None:
    def intend(_: int) -> str:
        with engine.begin() as conn:
            entry = Effects(conn).intend("k", system="s", operation="o", request_digest="r")
            return entry.idempotency_key

    assert set(concurrently(4, intend)) == {"k"}


def test_effect_ledger_refuses_moves_out_of_done(engine: Engine) -> None:
    with engine.begin() as conn:
        ledger = Effects(conn)
        ledger.intend("k1", system="xero", operation="op", request_digest="r1")
        ledger.complete("k1", external_id="first", result={"v": 1})
        replayed = ledger.complete("k1", external_id="second", result={"v": 2})
        assert (replayed.external_id, replayed.result) == ("first", {"v": 1})
        with pytest.raises(InvalidTransition, match="'done' to 'failed'"):
            ledger.fail("k1", "too late")
        with pytest.raises(InvalidTransition):
            ledger.doubt("k1", "too late")


def test_a_failed_effect_can_still_complete_when_replayed(engine: Engine) -> None:
    with engine.begin() as conn:
        ledger = Effects(conn)
        ledger.intend("k1", system="xero", operation="op", request_digest="r1")
        failed = ledger.fail("k1", "422 invalid tax code")
        assert (failed.status, failed.error) == (EffectStatus.FAILED, "422 invalid tax code")
        assert ledger.complete("k1", external_id="c-1").status is EffectStatus.DONE


def test_unknown_effect_keys_are_reported(engine: Engine) -> None:
    with engine.begin() as conn:
        ledger = Effects(conn)
        assert ledger.get("nope") is None
        with pytest.raises(NotFound):
            ledger.attempt("nope")
        with pytest.raises(NotFound):
            ledger.complete("nope")


# --------------------------------------------------------------------------- exceptions


def test_exception_queue_filters_by_role_and_state_and_reports_ages(
    engine: Engine, clock: FakeClock
) -> None:
    with engine.begin() as conn:
        queue = Exceptions(conn, clock)
        billing = queue.raise_(
            "ownership_violation",
            role="billing",
            summary="CRM changed the invoice address, which the ERP owns",
            context={"record": "account/A1", "field": "billing_address"},
            trace_id="t1",
        )
        clock.advance(hours=2)
        sales = queue.raise_("duplicate_customer", role="sales", summary="Acme twice")
        clock.advance(hours=1)
        later = queue.raise_("unmapped_tax_code", role="billing", summary="tax code Z9")
        queue.assign(later.id, "erin")
        clock.advance(minutes=30)

        open_billing = queue.list("billing", ExceptionState.OPEN)
        assert [item.id for item in open_billing] == [billing.id]
        item = open_billing[0]
        assert item.age == timedelta(hours=3, minutes=30)
        assert item.context == {"record": "account/A1", "field": "billing_address"}
        assert (item.type, item.trace_id) == ("ownership_violation", "t1")

        active = queue.list("billing", [ExceptionState.OPEN, ExceptionState.ASSIGNED])
        assert [(i.id, i.age) for i in active] == [
            (billing.id, timedelta(hours=3, minutes=30)),
            (later.id, timedelta(minutes=30)),
        ]
        assert [i.id for i in queue.list(state=ExceptionState.OPEN)] == [billing.id, sales.id]
        assert [i.id for i in queue.list(type="duplicate_customer")] == [sales.id]
        assert [i.assignee for i in queue.list(state=ExceptionState.ASSIGNED)] == ["erin"]
        assert len(queue.list(limit=2)) == 2


def test_exception_items_move_through_their_lifecycle(engine: Engine, clock: FakeClock) -> None:
    with engine.begin() as conn:
        queue = Exceptions(conn, clock)
        raised = queue.raise_("t", role="ops", summary="s")
        assert raised.created
        assigned = queue.assign(raised.id, "ann")
        reassigned = queue.assign(raised.id, "bob")
        assert (assigned.state, reassigned.assignee) == (ExceptionState.ASSIGNED, "bob")
        clock.advance(minutes=1)
        resolved = queue.resolve(raised.id, "merged the duplicates")
        assert (resolved.state, resolved.resolution) == (
            ExceptionState.RESOLVED,
            "merged the duplicates",
        )
        assert resolved.updated_at == START + timedelta(minutes=1)
        with pytest.raises(InvalidTransition, match="'resolved' to 'assigned'"):
            queue.assign(raised.id, "carl")
        other = queue.raise_("t", role="ops", summary="s2")
        assert queue.ignore(other.id, "known test data").state is ExceptionState.IGNORED
        with pytest.raises(InvalidTransition):
            queue.resolve(other.id, "changed my mind")
        with pytest.raises(NotFound):
            queue.assign("no-such-id", "ann")


def test_a_recurring_problem_stays_one_item_until_resolved(engine: Engine) -> None:
    with engine.begin() as conn:
        queue = Exceptions(conn)
        first = queue.raise_("conflict", role="ops", summary="s", dedupe_key="conflict:A1:vat")
        repeat = queue.raise_("conflict", role="ops", summary="s", dedupe_key="conflict:A1:vat")
        assert (repeat.id, repeat.created) == (first.id, False)
        queue.resolve(first.id, "fixed")
        recurred = queue.raise_("conflict", role="ops", summary="s", dedupe_key="conflict:A1:vat")
        assert recurred.created and recurred.id != first.id
        queue.ignore(recurred.id, "expected")
        quiet = queue.raise_("conflict", role="ops", summary="s", dedupe_key="conflict:A1:vat")
        assert (quiet.id, quiet.created) == (recurred.id, False)
        assert len(queue.list(role="ops")) == 2


def test_concurrent_reports_of_one_problem_open_one_item(engine: Engine) -> None:
    def report(_: int) -> str:
        with engine.begin() as conn:
            return Exceptions(conn).raise_("c", role="ops", summary="s", dedupe_key="one").id

    assert len(set(concurrently(4, report))) == 1


# --------------------------------------------------------------------------- cursors


def test_cursors_are_stored_per_system_and_stream(engine: Engine, clock: FakeClock) -> None:
    with engine.begin() as conn:
        cursors = Cursors(conn, clock)
        assert cursors.get("tryton", "timesheet.line") is None
        cursors.set("tryton", "timesheet.line", "2025-03-01T00:00:00Z")
        cursors.set("tryton", "timesheet.line", "2025-03-02T00:00:00Z")
        cursors.set("tryton", "project.work", "17")
        assert cursors.get("tryton", "timesheet.line") == "2025-03-02T00:00:00Z"
        assert cursors.get("tryton", "project.work") == "17"


# --------------------------------------------------------------------------- audit


def _log(engine: Engine, count: int = 5) -> None:
    with engine.begin() as conn:
        for i in range(1, count + 1):
            append(
                conn,
                actor=f"user{i}",
                action="record.put",
                subject=f"account/A{i}",
                data={"version": i, "amount_minor": i * 100},
                at=START + timedelta(seconds=i),
            )


def _tamper(engine: Engine, *statements: str) -> None:
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))


def _forge(engine: Engine, seq: int, prev_hash: str, *, valid: bool = True) -> None:
    """Insert an entry straight into the table, hashed correctly unless ``valid`` is False."""
    at = START + timedelta(seconds=seq, milliseconds=500)
    fields: dict[str, Any] = {
        "actor": "mallory",
        "action": "payment.write_off",
        "subject": "invoice/I9",
        "data": {"amount_minor": 99_999},
    }
    digest = entry_hash(seq=seq, at=at, prev_hash=prev_hash, **fields)
    with engine.begin() as conn:
        conn.execute(
            audit_log.insert().values(
                seq=seq, at=at, prev_hash=prev_hash, hash=digest if valid else "f" * 64, **fields
            )
        )


def _hash_of(engine: Engine, seq: int) -> str:
    with engine.connect() as conn:
        return str(conn.execute(select(audit_log.c.hash).where(audit_log.c.seq == seq)).scalar())


def _report(engine: Engine) -> Any:
    with engine.connect() as conn:
        return verify(conn)


def test_an_intact_audit_chain_verifies(engine: Engine) -> None:
    assert _report(engine).ok  # empty
    _log(engine)
    report = _report(engine)
    assert report.ok, str(report)
    assert (report.checked, report.anchored_count, report.head_hash) == (
        5,
        5,
        _hash_of(engine, 5),
    )
    assert str(report).startswith("audit log intact: 5 entries")
    with engine.connect() as conn:
        listed = entries(conn, after_seq=1, limit=2)
        assert [e.seq for e in listed] == [2, 3]
        assert listed[0].prev_hash == _hash_of(engine, 1)
        assert [e.seq for e in entries(conn, subject="account/A4")] == [4]
        assert listed[0].at == START + timedelta(seconds=2)


def test_audit_verify_detects_an_altered_entry(engine: Engine) -> None:
    _log(engine)
    _tamper(engine, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 3")
    report = _report(engine)
    assert (report.problem, report.seq) == (AuditProblem.ALTERED, 3)
    assert "does not match its hash" in report.detail


def test_audit_verify_detects_altered_data(engine: Engine) -> None:
    _log(engine)
    with engine.begin() as conn:
        conn.execute(update(audit_log).where(audit_log.c.seq == 2).values(data={"version": 2}))
    assert (_report(engine).problem, _report(engine).seq) == (AuditProblem.ALTERED, 2)


def test_audit_verify_detects_an_entry_altered_and_rehashed(engine: Engine) -> None:
    _log(engine)
    with engine.begin() as conn:
        row = conn.execute(select(audit_log).where(audit_log.c.seq == 3)).one()
        forged = entry_hash(
            seq=3,
            at=row.at,
            actor="mallory",
            action=row.action,
            subject=row.subject,
            data=row.data,
            prev_hash=row.prev_hash,
        )
        conn.execute(
            update(audit_log).where(audit_log.c.seq == 3).values(actor="mallory", hash=forged)
        )
    report = _report(engine)
    assert (report.problem, report.seq) == (AuditProblem.ALTERED, 3)
    assert "re-hashed" in report.detail


def test_audit_verify_detects_an_inserted_entry(engine: Engine) -> None:
    _log(engine)
    # Make room at seq 3 (in two steps: a unique key may not collide mid-update).
    _tamper(
        engine,
        "UPDATE audit_log SET seq = seq + 1000 WHERE seq >= 3",
        "UPDATE audit_log SET seq = seq - 999 WHERE seq >= 1000",
    )
    _forge(engine, 3, prev_hash=_hash_of(engine, 2))
    report = _report(engine)
    assert (report.problem, report.seq) == (AuditProblem.INSERTED, 3)
    assert "entry 3 is not part of the chain" in report.detail


def test_audit_verify_detects_an_inserted_entry_with_a_made_up_hash(engine: Engine) -> None:
    _log(engine)
    _tamper(
        engine,
        "UPDATE audit_log SET seq = seq + 1000 WHERE seq >= 3",
        "UPDATE audit_log SET seq = seq - 999 WHERE seq >= 1000",
    )
    _forge(engine, 3, prev_hash=_hash_of(engine, 2), valid=False)
    assert (_report(engine).problem, _report(engine).seq) == (AuditProblem.INSERTED, 3)


def test_audit_verify_detects_an_entry_appended_behind_accords_back(engine: Engine) -> None:
    _log(engine)
    _forge(engine, 6, prev_hash=_hash_of(engine, 5))  # a perfectly chained extra entry
    report = _report(engine)
    assert (report.problem, report.seq) == (AuditProblem.INSERTED, 6)
    assert "after the anchored head" in report.detail


def test_audit_verify_detects_a_deleted_entry_in_the_middle(engine: Engine) -> None:
    _log(engine)
    _tamper(engine, "DELETE FROM audit_log WHERE seq = 3")
    report = _report(engine)
    assert (report.problem, report.seq) == (AuditProblem.DELETED, 3)
    assert "seq jumps from 2 to 4" in report.detail


def test_audit_verify_detects_deleted_entries_hidden_by_renumbering(engine: Engine) -> None:
    _log(engine, 6)
    _tamper(
        engine,
        "DELETE FROM audit_log WHERE seq IN (3, 4)",
        "UPDATE audit_log SET seq = seq - 2 WHERE seq > 4",
    )
    report = _report(engine)
    assert (report.problem, report.seq) == (AuditProblem.DELETED, 3)
    assert "2 entries before this one deleted" in report.detail


def test_audit_verify_detects_a_deleted_tail(engine: Engine) -> None:
    _log(engine)
    _tamper(engine, "DELETE FROM audit_log WHERE seq >= 4")
    report = _report(engine)
    assert (report.problem, report.seq) == (AuditProblem.DELETED, 4)
    assert "entries 4–5 are cut off the end" in report.detail


def test_audit_verify_detects_a_rewritten_tail(engine: Engine) -> None:
    _log(engine)
    _tamper(engine, "DELETE FROM audit_log WHERE seq = 5")
    _forge(engine, 5, prev_hash=_hash_of(engine, 4))  # valid chain, same count, other head
    report = _report(engine)
    assert (report.problem, report.seq) == (AuditProblem.ALTERED, 5)


def test_audit_verify_reports_a_missing_anchor(engine: Engine) -> None:
    _log(engine, 2)
    _tamper(engine, "DELETE FROM audit_head")
    report = _report(engine)
    assert report.problem is AuditProblem.ANCHOR_MISSING
    with engine.begin() as conn, pytest.raises(RuleViolation, match="audit anchor"):
        append(conn, actor="a", action="b", subject="c")


def test_concurrent_appends_keep_one_unbroken_chain(engine: Engine) -> None:
    def write(i: int) -> None:
        for j in range(10):
            with engine.begin() as conn:
                append(conn, actor=f"w{i}", action="tick", subject="clock", data={"j": j})

    concurrently(4, write)
    report = _report(engine)
    assert report.ok, str(report)
    assert report.checked == 40


def test_audit_times_round_trip_in_utc_whatever_zone_they_were_given_in(
    engine: Engine,
) -> None:
    local = datetime(2025, 3, 3, 10, 30, 0, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    with engine.begin() as conn:
        written = append(conn, actor="a", action="b", subject="c", at=local)
    with engine.connect() as conn:
        (read,) = entries(conn)
    assert read.at == local and read.at.tzinfo is UTC
    assert read.hash == written.hash and _report(engine).ok
