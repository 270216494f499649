"""Two and three worker processes on PostgreSQL share the work; no event twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from accord.sandbox.recorder import RecorderServer
from accord.store import make_engine, upgrade
from accord.store.tables import effects, inbox, record_versions

from .test_crash_recovery import done_count, ingest, write_config

EVENTS = 2000


@pytest.mark.slow
@pytest.mark.parametrize("workers", [2, 3])
def test_workers_on_postgresql_share_the_work_and_process_no_event_twice(
    workers: int, postgres_url: str, tmp_path: Path
) -> None:
    with RecorderServer(seed=workers) as recorder:
        engine = make_engine(postgres_url)
        upgrade(engine)
        config = write_config(tmp_path, postgres_url, recorder.url)
        procs = []
        log = (tmp_path / "workers.log").open("ab", buffering=0)
        for n in range(workers):
            env = {**os.environ, "ACCORD_CONFIG": str(config), "ACCORD_WORKER_ID": f"w{n}"}
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "accord.cli", "worker"], env=env, stdout=log, stderr=log
                )
            )
        try:
            ready_deadline = time.monotonic() + 90
            while time.monotonic() < ready_deadline:  # every worker up before events arrive
                text_log = (tmp_path / "workers.log").read_text(errors="replace")
                if text_log.count("running on") >= workers:
                    break
                time.sleep(0.1)
            for start in range(0, EVENTS, 100):
                ingest(engine, start, start + 100)
                time.sleep(0.05)  # arriving over time, as webhooks do
            deadline = time.monotonic() + 180
            while done_count(engine) < EVENTS and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait(30)
            log.close()
        with engine.connect() as conn:
            attempts = dict(
                conn.execute(
                    select(inbox.c.attempts, func.count()).group_by(inbox.c.attempts)
                ).all()
            )
            versions = conn.execute(select(func.count()).select_from(record_versions)).scalar_one()
            ledger = dict(
                conn.execute(
                    select(effects.c.status, func.count()).group_by(effects.c.status)
                ).all()
            )
            per_worker = dict(
                conn.execute(
                    text(
                        "SELECT executor_id, count(*) FROM dbos.workflow_status"
                        " GROUP BY executor_id"
                    )
                ).all()
            )
        engine.dispose()
        assert done_count_of(attempts) == EVENTS
        assert attempts == {1: EVENTS}  # every event claimed once: none processed twice
        assert versions == EVENTS
        assert ledger == {"done": EVENTS}
        assert recorder.stats()["objects"] == EVENTS
        assert set(per_worker) == {f"w{n}" for n in range(workers)}, per_worker
        assert all(count > 0 for count in per_worker.values())


def done_count_of(attempts: dict[int, int]) -> int:
    return sum(attempts.values())
