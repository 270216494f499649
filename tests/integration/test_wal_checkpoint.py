"""Background checkpoints of the SQLite WAL (accord.store.checkpoint), on real files."""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from accord.bootstrap import build_hub
from accord.config import Settings
from accord.ownership import default_policy
from accord.store import checkpoint, make_engine
from accord.store.checkpoint import WalCheckpointer, lower_priority
from accord.store.db import WAL_AUTOCHECKPOINT_PAGES, write_transaction, writer_lock

ROW = "x" * 2000


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'accord.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)"))
    yield engine
    engine.dispose()


def write(engine: Engine, commits: int) -> None:
    """Commits as the hub's writers make them, under the process's writer lock."""
    for _ in range(commits):
        with write_transaction(engine) as conn:
            conn.execute(text("INSERT INTO t (body) VALUES (:b)"), {"b": ROW})


def test_the_log_length_is_read_from_the_wal_index(engine: Engine) -> None:
    checkpointer = WalCheckpointer(engine)
    try:
        before = checkpointer.log_frames()
        write(engine, 100)
        after = checkpointer.log_frames()
        assert before is not None and after is not None
        assert after >= before + 100  # one frame at least per commit
        with engine.connect() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            _busy, frames, _copied = raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert frames == after
    finally:
        checkpointer.stop()


def test_a_round_copies_the_log_and_the_next_commit_starts_it_again(engine: Engine) -> None:
    checkpointer = WalCheckpointer(engine)
    try:
        write(engine, 200)
        done = checkpointer.run_round()
        assert done.grown_frames >= 200
        assert done.copied_frames == done.log_frames  # everything is in the database file
        write(engine, 1)
        frames = checkpointer.log_frames()
        assert frames is not None and frames < 10  # the log began again
    finally:
        checkpointer.stop()


def test_what_a_pass_could_not_copy_is_copied_with_the_writers_held(engine: Engine) -> None:
    """A reader on an older snapshot keeps the passes beside the writers from
    copying the newest frames; the last pass then waits for the writer lock."""
    checkpointer = WalCheckpointer(engine)
    path = engine.url.database
    assert path is not None
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        write(engine, 10)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM t").fetchone()  # holds this snapshot
        write(engine, 50)
        lock = writer_lock(engine)
        rounds = []
        with lock:
            worker = threading.Thread(target=lambda: rounds.append(checkpointer.run_round()))
            worker.start()
            worker.join(0.3)
            assert worker.is_alive()  # waiting for the writers' lock
            reader.execute("COMMIT")
            released = time.monotonic()
        worker.join(10)
        assert not worker.is_alive()
        (done,) = rounds
        assert done.copied_frames == done.log_frames
        assert 0 < done.locked_seconds < time.monotonic() - released + 1
        write(engine, 1)
        frames = checkpointer.log_frames()
        assert frames is not None and frames < 10
    finally:
        reader.close()
        checkpointer.stop()


class _Recorded:
    """A lock that notes when it is taken, in one list with the flushes."""

    def __init__(self, lock: Any, seen: list[str]) -> None:
        self._lock, self._seen = lock, seen

    def __enter__(self) -> Any:
        self._seen.append("lock")
        return self._lock.__enter__()

    def __exit__(self, *exc: object) -> Any:
        self._seen.append("unlock")
        return self._lock.__exit__(*exc)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a file's name from /proc/self/fd")
def test_the_files_are_flushed_beside_the_writers_before_they_are_held(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the passes copied reaches the disk before the lock, so that the
    pass under the lock only flushes what was written since."""
    checkpointer = WalCheckpointer(engine)
    path = engine.url.database
    assert path is not None
    seen: list[str] = []
    real = checkpoint._fdatasync

    def flush(fd: int) -> None:
        seen.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        real(fd)

    monkeypatch.setattr(checkpoint, "_fdatasync", flush)
    checkpointer._lock = _Recorded(checkpointer._lock, seen)
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        write(engine, 10)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM t").fetchone()  # the passes stop at this snapshot
        write(engine, 50)
        rounds = []
        worker = threading.Thread(target=lambda: rounds.append(checkpointer.run_round()))
        with writer_lock(engine):
            worker.start()
            deadline = time.monotonic() + 10
            while "lock" not in seen and time.monotonic() < deadline:
                time.sleep(0.01)
            reader.execute("COMMIT")
        worker.join(10)
        (done,) = rounds
        assert seen == ["accord.db-wal", "accord.db", "lock", "unlock"]
        assert done.flush_seconds > 0
        assert done.copied_frames == done.log_frames
        write(engine, 1)
        frames = checkpointer.log_frames()
        assert frames is not None and frames < 10  # the log began again
    finally:
        reader.close()
        checkpointer.stop()


def test_a_round_with_nothing_left_for_the_lock_flushes_nothing_itself(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    flushed: list[int] = []
    monkeypatch.setattr(checkpoint, "_fdatasync", flushed.append)
    checkpointer = WalCheckpointer(engine)
    try:
        write(engine, 20)
        done = checkpointer.run_round()  # no writer meanwhile: the passes copy it all
        assert done.locked_seconds == 0 and done.flush_seconds == 0
        assert flushed == []
    finally:
        checkpointer.stop()


def test_the_thread_keeps_the_log_short_while_writers_commit(engine: Engine) -> None:
    checkpointer = WalCheckpointer(engine, round_frames=100).start()
    restarts = 0
    last = longest = 0
    try:
        deadline = time.monotonic() + 30
        while restarts < 3 and time.monotonic() < deadline:
            write(engine, 10)
            frames = checkpointer.log_frames() or 0
            # the log only grows until a checkpoint has copied all of it and
            # the next commit starts it again; on its own, that would take
            # wal_autocheckpoint (10,000 pages), far more than this writes
            restarts += frames < last
            last = frames
            longest = max(longest, frames)
        assert restarts >= 3
        assert longest < WAL_AUTOCHECKPOINT_PAGES // 2  # not the commits' own checkpoints
        assert checkpointer.rounds >= 3
        assert checkpointer.running
    finally:
        checkpointer.stop()
    assert not checkpointer.running


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priorities: Linux")
def test_the_thread_runs_at_a_lower_priority_and_the_caller_keeps_its_own() -> None:
    seen: list[tuple[bool, int, int]] = []

    def lowered() -> None:
        tid = threading.get_native_id()
        before = os.getpriority(os.PRIO_PROCESS, tid)
        seen.append((lower_priority(10), before, os.getpriority(os.PRIO_PROCESS, tid)))

    thread = threading.Thread(target=lowered)
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    thread.start()
    thread.join()
    ((done, before, after),) = seen
    assert done
    assert after == min(before + 10, 19)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine


def test_only_a_sqlite_file_gets_one(tmp_path: Path) -> None:
    assert WalCheckpointer.for_engine(make_engine("sqlite://")) is None
    assert WalCheckpointer.for_engine(make_engine("postgresql://u@127.0.0.1:1/none")) is None
    with pytest.raises(ValueError, match="SQLite file"):
        WalCheckpointer(make_engine("sqlite://"))
    assert WalCheckpointer.for_engine(make_engine(f"sqlite:///{tmp_path / 'a.db'}")) is not None


POLICY = default_policy()


@pytest.mark.parametrize("enabled", [True, False])
def test_a_started_hub_runs_it_as_configured_and_stops_it(tmp_path: Path, enabled: bool) -> None:
    settings = Settings.model_validate(
        {
            "database_url": f"sqlite:///{tmp_path / 'accord.db'}",
            "runtime": {"background_checkpoint": enabled},
        }
    )
    hub = build_hub(settings, vendors={}, routes=[], policy=POLICY)
    assert hub.checkpointer is None  # not before it starts
    hub.start(dispatch=False)
    try:
        checkpointer = hub.checkpointer
        assert (checkpointer is not None and checkpointer.running) is enabled
    finally:
        hub.stop()
    assert hub.checkpointer is None
    if checkpointer is not None:
        assert not checkpointer.running
