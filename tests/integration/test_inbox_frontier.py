"""Claiming on SQLite by the inbox frontier: events never claimed are found by
their seq above ``inbox_frontier``, events due again by the partial status index.

The property test holds the claim to its plain meaning (the oldest due events,
pending or failed and not held back) through any mix of intake, claims,
outcomes and time, so that the frontier can never pass an event that still
waits. The migration tests carry a database in every state over and back.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select, text

from accord.store import make_engine, upgrade
from accord.store.db import alembic_config
from accord.store.repo import _SQLITE_CLAIM, _SQLITE_FIRST_WAITING, Inbox, _waiting_by_system
from accord.store.tables import InboxStatus, inbox, inbox_frontier

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Modelled:
    """What the inbox should hold for one event."""

    system: str
    status: InboxStatus = InboxStatus.PENDING
    attempts: int = 0
    available_at: datetime | None = None


class Model:
    """The inbox as the claim is specified: no frontier, no index, every event looked at."""

    def __init__(self) -> None:
        self.events: dict[int, Modelled] = {}

    def due(self, now: datetime, system: str | None) -> list[int]:
        return sorted(
            seq
            for seq, e in self.events.items()
            if e.status in (InboxStatus.PENDING, InboxStatus.FAILED)
            and (e.available_at is None or e.available_at <= now)
            and (system is None or e.system == system)
        )

    def claim(
        self, now: datetime, limit: int, system: str | None, lease: timedelta
    ) -> list[tuple[int, int]]:
        taken = self.due(now, system)[:limit]
        for seq in taken:
            self.events[seq].attempts += 1
            self.events[seq].available_at = now + lease
        return [(seq, self.events[seq].attempts) for seq in taken]

    def mark(self, seq: int, status: InboxStatus, now: datetime, retry_after: timedelta) -> None:
        event = self.events[seq]
        event.status = status
        if status is InboxStatus.FAILED:
            event.available_at = now + retry_after
        elif status is InboxStatus.PENDING:
            event.available_at = now
        else:
            event.available_at = None

    def waiting_by_system(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for e in self.events.values():
            if e.status in (InboxStatus.PENDING, InboxStatus.FAILED):
                counts[e.system] = counts.get(e.system, 0) + 1
        return counts

    def first_waiting(self) -> int | None:
        waiting = [
            seq
            for seq, e in self.events.items()
            if e.status in (InboxStatus.PENDING, InboxStatus.FAILED)
        ]
        return min(waiting) if waiting else None


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated SQLite file, copied for each example (migrating each is slow)."""
    path = tmp_path_factory.mktemp("frontier") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture
def fresh(migrated: Path, tmp_path: Path) -> Iterator[Callable[[], Engine]]:
    """Engines on copies of the migrated file, disposed of at the end."""
    made: list[Engine] = []

    def make() -> Engine:
        path = tmp_path / f"inbox-{len(made)}.db"
        shutil.copy(migrated, path)
        engine = make_engine(f"sqlite:///{path}")
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.dispose()


def _frontier(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(inbox_frontier.c.claimed_through)).scalar_one())


_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("ingest"), st.sampled_from(["crm", "erp"]), st.integers(1, 4)),
        st.tuples(
            st.just("claim"),
            st.integers(1, 6),
            st.sampled_from([None, None, "crm", "erp"]),
            st.integers(10, 90),
        ),
        st.tuples(
            st.just("mark"),
            st.integers(0, 40),
            st.sampled_from(list(InboxStatus)),
            st.integers(0, 60),
        ),
        st.tuples(st.just("wait"), st.integers(1, 120)),
    ),
    max_size=40,
)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=_OPS)
def test_a_claim_takes_exactly_the_oldest_due_events_whatever_came_before(
    fresh: Callable[[], Engine], ops: list[tuple[Any, ...]]
) -> None:
    engine = fresh()
    clock = Clock()
    model = Model()
    names = 0
    for op in ops:
        with engine.begin() as conn:
            box = Inbox(conn, clock)
            if op[0] == "ingest":
                _, system, count = op
                for _ in range(count):
                    names += 1
                    assert box.accept(system, f"e{names}", event_type="t", payload={})
                    seq = conn.execute(select(inbox.c.seq).where(inbox.c.event_id == f"e{names}"))
                    model.events[int(seq.scalar_one())] = Modelled(system)
            elif op[0] == "claim":
                _, limit, system, lease = op
                lease_for = timedelta(seconds=lease)
                claimed = box.claim_seqs(limit, system=system, lease=lease_for)
                assert claimed == model.claim(clock.now, limit, system, lease_for)
            elif op[0] == "mark" and model.events:
                _, pick, status, retry = op
                seq = sorted(model.events)[pick % len(model.events)]
                retry_after = timedelta(seconds=retry)
                assert box.mark(seq, status, retry_after=retry_after) == 1
                model.mark(seq, status, clock.now, retry_after)
            elif op[0] == "wait":
                clock.now += timedelta(seconds=op[1])
            assert box.first_waiting() == model.first_waiting()
            counts = {system: count for system, (count, _) in box.waiting_by_system().items()}
            assert counts == model.waiting_by_system()
    # whatever the history, nothing is left behind: everything due is claimable
    clock.now += timedelta(days=1)
    with engine.begin() as conn:
        left = Inbox(conn, clock).claim_seqs(10_000, lease=timedelta(seconds=1))
    assert left == model.claim(clock.now, 10_000, None, timedelta(seconds=1))


def test_intake_adds_nothing_to_the_status_index_and_a_finished_event_leaves_it(
    fresh: Callable[[], Engine],
) -> None:
    engine = fresh()
    indexed = text(
        "SELECT count(*) FROM inbox INDEXED BY ix_inbox_status_seq"
        " WHERE status IN ('pending', 'failed') AND available_at IS NOT NULL"
    )
    with engine.begin() as conn:
        box = Inbox(conn)
        for i in range(20):
            box.accept("crm", f"e{i}", event_type="t", payload={})
        assert conn.execute(indexed).scalar_one() == 0
        claimed = [seq for seq, _ in box.claim_seqs(5, lease=timedelta(seconds=30))]
        assert conn.execute(indexed).scalar_one() == 5
        box.mark(claimed[:4], InboxStatus.DONE)
        box.mark(claimed[4], InboxStatus.FAILED, retry_after=timedelta(seconds=5))
        assert conn.execute(indexed).scalar_one() == 1
    assert _frontier(engine) == claimed[-1]


def test_claims_on_sqlite_read_no_more_of_the_inbox_than_they_take(
    fresh: Callable[[], Engine],
) -> None:
    """The query plans: by seq above the frontier and by the partial index, never
    a scan of the whole inbox (which grows by every event ever received)."""
    engine = fresh()
    by_system = str(
        _waiting_by_system("sqlite").compile(engine, compile_kwargs={"literal_binds": True})
    )
    with engine.connect() as conn:
        for sql, params in (
            (_SQLITE_CLAIM[False], ("t", 10, "t", 10, 10)),
            (_SQLITE_CLAIM[True], ("t", "crm", 10, "t", "crm", 10, 10)),
            (_SQLITE_FIRST_WAITING, ()),
            (by_system, ()),
        ):
            plan = [row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params)]
            reads = [step for step in plan if " inbox " in f"{step} "]
            assert reads, plan
            assert all(
                "INTEGER PRIMARY KEY" in step or "USING INDEX ix_inbox_status_seq" in step
                for step in reads
            ), plan


def test_a_claim_for_one_system_leaves_the_frontier_where_it_was(
    fresh: Callable[[], Engine],
) -> None:
    engine = fresh()
    with engine.begin() as conn:
        box = Inbox(conn)
        box.accept("crm", "c1", event_type="t", payload={})
        box.accept("erp", "x1", event_type="t", payload={})
        box.accept("crm", "c2", event_type="t", payload={})
        crm = box.claim_seqs(10, system="crm", lease=timedelta(seconds=30))
        assert [seq for seq, _ in crm] == [1, 3]
    assert _frontier(engine) == 0
    with engine.begin() as conn:
        assert Inbox(conn).claim_seqs(10, lease=timedelta(seconds=30)) == [(2, 1)]
    assert _frontier(engine) == 2


def _events_in_every_state(engine: Engine, clock: Clock) -> dict[str, int]:
    """Events as a database holds them: done, dead, failed, leased and never claimed,
    and one put back the way the previous schema did (no ``available_at``)."""
    with engine.begin() as conn:
        box = Inbox(conn, clock)
        for name in ("done", "dead", "failed", "leased", "requeued", "new1", "new2"):
            box.accept("crm", name, event_type="t", payload={})
        seqs = {
            row.event_id: int(row.seq)
            for row in conn.execute(select(inbox.c.event_id, inbox.c.seq))
        }
        conn.execute(
            inbox.update()
            .where(inbox.c.seq <= seqs["requeued"])
            .values(attempts=1, available_at=START + timedelta(minutes=5))
        )
        box.mark(seqs["done"], InboxStatus.DONE)
        box.mark(seqs["dead"], InboxStatus.DEAD, error="bad")
        box.mark(seqs["failed"], InboxStatus.FAILED, retry_after=timedelta(seconds=30))
        conn.execute(
            inbox.update().where(inbox.c.seq == seqs["requeued"]).values(available_at=None)
        )
    return seqs


def test_the_frontier_starts_below_every_event_not_yet_claimed_and_the_move_goes_back(
    tmp_path: Path,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    config = alembic_config()
    clock = Clock()
    try:
        upgrade(engine, "0008")
        seqs = _events_in_every_state(engine, clock)
        upgrade(engine)
        # the requeued event has no available_at, as if never claimed: the frontier
        # stays below it
        assert _frontier(engine) == seqs["requeued"] - 1
        clock.now += timedelta(minutes=10)
        with engine.begin() as conn:
            claimed = Inbox(conn, clock).claim_seqs(10, lease=timedelta(seconds=30))
        assert [seq for seq, _ in claimed] == [
            seqs[name] for name in ("failed", "leased", "requeued", "new1", "new2")
        ]
        assert _frontier(engine) == seqs["new2"]
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "0008")
        with engine.connect() as conn:
            definition = conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE name = 'ix_inbox_status_seq'"
            ).scalar_one()
            assert "WHERE" not in definition
            tables = conn.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
            ).scalars()
            assert "inbox_frontier" not in set(tables)
    finally:
        engine.dispose()


def test_a_database_where_every_event_was_claimed_starts_at_the_newest(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        upgrade(engine, "0008")
        with engine.begin() as conn:
            box = Inbox(conn)
            for i in range(3):
                box.accept("crm", f"e{i}", event_type="t", payload={})
            # claimed, as the previous schema's claim left them
            conn.execute(inbox.update().values(attempts=1, available_at=START))
        upgrade(engine)
        assert _frontier(engine) == 3
    finally:
        engine.dispose()
    empty = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        upgrade(empty)
        assert _frontier(empty) == 0
    finally:
        empty.dispose()
