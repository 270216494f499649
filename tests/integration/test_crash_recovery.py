"""A worker killed with SIGKILL at random points, restarted, again and again.

Afterwards every event is applied exactly once and every effect happened exactly
once, counted at the receiving stand-in (which lives in this test process and so
survives the kills).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from accord.sandbox.recorder import Faults, RecorderServer
from accord.store import Inbox, make_engine, upgrade
from accord.store.tables import effects, inbox, record_versions

EVENTS = 3000


def write_config(tmp_path: Path, database_url: str, recorder_url: str) -> Path:
    config = tmp_path / "accord.yaml"
    config.write_text(
        f"""
accord: 1
database_url: "{database_url}"
runtime:
  batch_size: 50
  batch_wait_ms: 5
  lease_seconds: 2
  retry: {{initial_interval: 0.005, maximum_interval: 0.1, maximum_attempts: 50}}
systems:
  crm: {{role: crm, connector: passthrough}}
  erp: {{role: erp, connector: recorder, base_url: "{recorder_url}"}}
routes:
  - {{entity_type: account, target: erp, operation: upsert_customer}}
ownership:
  ownership:
    systems: {{crm: crm, erp: erp}}
    account: {{owner: crm}}
"""
    )
    return config


def ingest(engine: Engine, start: int, stop: int) -> None:
    with engine.begin() as conn:
        box = Inbox(conn)
        for i in range(start, stop):
            box.accept(
                "crm",
                f"evt-{i}",
                event_type="account.updated",
                payload={
                    "entity_type": "account",
                    "external_object": "Account",
                    "external_id": f"A{i:06d}",
                    "fields": {"legal_name": f"Customer {i}"},
                },
            )


def start_worker(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "ACCORD_CONFIG": str(config), "ACCORD_WORKER_ID": "crash-test"}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "accord.cli", "worker"], env=env, stdout=out, stderr=out
        )


def done_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(inbox).where(inbox.c.status == "done")
            ).scalar_one()
        )


def settled(engine: Engine) -> bool:
    """Every event done and every effect it planned performed (none still open)."""
    with engine.connect() as conn:
        open_effects = conn.execute(
            select(func.count()).select_from(effects).where(effects.c.status != "done")
        ).scalar_one()
    return done_count(engine) == EVENTS and open_effects == 0


def run_with_kills(engine: Engine, config: Path, log: Path, kills: int, seed: int) -> list[int]:
    """Kill the worker ``kills`` times; returns how many events were done at each kill.

    Each kill lands at a random point of the work, whatever the worker's speed:
    once the done count passes a random threshold, after a random few
    milliseconds more (so mostly with a batch in flight).
    """
    rng = random.Random(seed)
    thresholds = sorted(rng.sample(range(1, EVENTS - 1), kills))
    progress: list[int] = []
    for threshold in thresholds:
        worker = start_worker(config, log)
        deadline = time.monotonic() + 60
        while done_count(engine) < threshold and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.05))
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        progress.append(done_count(engine))
        if progress[-1] == EVENTS:
            break
    worker = start_worker(config, log)  # recovers the workflow the last kill cut short
    deadline = time.monotonic() + 240
    try:
        while not settled(engine) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    return progress


def assert_exactly_once(engine: Engine, recorder: RecorderServer) -> None:
    with engine.connect() as conn:
        statuses = dict(
            conn.execute(select(inbox.c.status, func.count()).group_by(inbox.c.status)).all()
        )
        versions = conn.execute(select(func.count()).select_from(record_versions)).scalar_one()
        ledger = dict(
            conn.execute(select(effects.c.status, func.count()).group_by(effects.c.status)).all()
        )
    assert statuses == {"done": EVENTS}
    assert versions == EVENTS  # one canonical version per event: applied once each
    assert ledger == {"done": EVENTS}
    stats = recorder.stats()
    assert stats["objects"] == EVENTS  # one object per effect at the receiving end


@pytest.mark.slow
def test_sigkilled_worker_applies_every_event_and_effect_exactly_once(tmp_path: Path) -> None:
    with RecorderServer(seed=11, faults=Faults(lost_response_rate=0.03, error_rate=0.02)) as rec:
        url = f"sqlite:///{tmp_path / 'accord.db'}"
        engine = make_engine(url)
        upgrade(engine)
        ingest(engine, 0, EVENTS)
        config = write_config(tmp_path, url, rec.url)
        progress = run_with_kills(engine, config, tmp_path / "worker.log", kills=5, seed=5)
        print(f"events done at each SIGKILL: {progress}")
        # the kills landed mid-run: some work done, not all
        assert any(0 < done < EVENTS for done in progress), progress
        assert_exactly_once(engine, rec)
        engine.dispose()
