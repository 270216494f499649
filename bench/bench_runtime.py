"""Runtime benchmark: how many inbound events per second the hub turns into done effects.

Three measurements, each on a fresh store, through the public API only
(``build_hub``, ``Hub.start``/``stop``, ``hub.pipeline.ingest``/``ingest_many``,
``hub.worker.drain``) and the store tables:

1. embedded SQLite on one pinned core: an intake thread ingests account events
   one call each at ``--rate`` for ``--seconds`` while the hub's worker sends one
   effect per event to the recorder stand-in, served by its own process on the
   other CPUs (``--vendor-in-process`` serves it from a thread of the hub's
   process instead, on the hub's core); then a drain of ``--drain`` events
   ingested up front;
2. PostgreSQL with 1 and then 2 ``accord worker`` subprocesses (skipped, with the
   reason, when the server does not answer);
3. a backfill of ``--backfill`` time-entry events, bulk-ingested in chunks of
   5,000 and then processed by the embedded hub.

It prints figures beside their targets and never fails because a figure missed one.

    .venv/bin/python bench/bench_runtime.py --quick            # smoke run, about a minute
    .venv/bin/python bench/bench_runtime.py                    # full size
    .venv/bin/python bench/bench_runtime.py --skip-pg --skip-backfill --json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, func, select

from accord.bootstrap import Hub, build_hub
from accord.config import RuntimeSettings, Settings
from accord.ownership import OwnershipPolicy, load_policy
from accord.runtime.http_vendor import IdempotentHttpVendor
from accord.runtime.pipeline import Route
from accord.sandbox.recorder import RecorderServer
from accord.store.repo import Inbox
from accord.store.tables import effects, inbox

TARGET_EVENTS_PER_S = 5_000
TARGET_P99_MS = 50.0
TARGET_BACKFILL_S = 300.0
#: A backfill whose first PROBE_EVENTS project a total beyond this stops there.
BACKFILL_LIMIT_S = 900.0
PROBE_EVENTS = 50_000
BACKFILL_CHUNK = 5_000
PG_CHUNK = 1_000
#: n8n's documented single-instance figure (docs.n8n.io, "Measure performance").
N8N_EXECUTIONS_PER_S = 220
N8N_SOURCE = "https://docs.n8n.io/hosting/scaling/performance-benchmarking/"
PG_ADMIN_URL = os.environ.get("ACCORD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
QUICK = {"rate": 1_000, "seconds": 3.0, "drain": 2_000, "pg_events": 2_000, "backfill": 20_000}
_MB = 1024 * 1024

ACCOUNT_POLICY_YAML = """\
ownership:
  systems: {crm: crm, erp: erp}
  account: {owner: crm}
"""
BACKFILL_POLICY_YAML = """\
ownership:
  systems: {crm: crm, erp: erp, psa: psa}
  account: {owner: crm}
  time_entry: {owner: psa}
"""
ACCOUNT_ROUTE = Route("account", "erp", "upsert_customer")
TIME_ENTRY_ROUTE = Route("time_entry", "erp", "upsert_time_entry")


# -- small helpers -----------------------------------------------------------------


def _peak_rss_mb() -> float:
    """Peak resident set size of this process so far (ru_maxrss: KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round((peak if sys.platform == "darwin" else peak * 1024) / _MB, 1)


def _percentile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None for an empty one)."""
    if not ordered:
        return None
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100), at least 1
    return ordered[int(rank) - 1]


def _rate(count: int, seconds: float | None) -> float | None:
    return round(count / seconds, 1) if seconds else None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def _now() -> datetime:
    return datetime.now(UTC)


def _cpu_ticks() -> tuple[int, int] | None:
    """(busy, total) jiffies of the whole machine, from /proc/stat (None where there is none)."""
    try:
        with open("/proc/stat") as stat:
            values = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values) - idle, sum(values)


def machine_busy(seconds: float = 1.0) -> float | None:
    """Share of all CPUs busy over ``seconds`` while this benchmark sits idle: other load."""
    before = _cpu_ticks()
    time.sleep(seconds)
    after = _cpu_ticks()
    if before is None or after is None or after[1] == before[1]:
        return None
    return round((after[0] - before[0]) / (after[1] - before[1]), 3)


#: raw SQLite one-row transactions/s in WAL/NORMAL, as ARCHITECTURE's throughput
#: note measured on this kind of machine
ARCHITECTURE_SQLITE_TX_PER_S = 88_000


def machine_reference(directory: Path, seconds: float = 1.0) -> dict[str, float]:
    """How fast this machine is right now, on work that involves nothing of Accord.

    Timed on the hub's core in the same run, so that figures from runs on
    different days (a virtual machine's speed drifts by a third and more) can
    be set side by side: raw SQLite one-row insert transactions per second (WAL,
    ``synchronous=NORMAL``, an account event's payload), and Python work units
    per second (encode a payload as JSON, hash it, decode it).
    """
    payload = account_event(0)["payload"]
    body = json.dumps(payload)
    path = directory / "reference.db"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        done = 0
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            for _ in range(200):
                conn.execute("INSERT INTO t (body) VALUES (?)", (body,))
            done += 200
        sqlite_rate = done / (time.perf_counter() - started)
    finally:
        conn.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(500):
            text = json.dumps(payload, sort_keys=True)
            hashlib.sha256(text.encode()).hexdigest()
            json.loads(text)
        done += 500
    return {
        "sqlite_tx_per_s": round(sqlite_rate),
        "python_units_per_s": round(done / (time.perf_counter() - started)),
    }


def account_event(i: int, prefix: str = "evt") -> dict[str, Any]:
    """One CRM webhook: an account with a new name, so it yields one ERP effect."""
    return {
        "system": "crm",
        "event_id": f"{prefix}-{i}",
        "event_type": "account.updated",
        "payload": {
            "entity_type": "account",
            "external_object": "Account",
            "external_id": f"001{i:08d}",
            "fields": {"legal_name": f"Customer {i} Ltd", "domain": f"c{i}.example"},
        },
    }


def time_entry_event(i: int) -> dict[str, Any]:
    """One PSA time entry, as a backfill from the PSA would deliver it."""
    day = 1 + i % 28
    return {
        "system": "psa",
        "event_id": f"te-{i}",
        "event_type": "time_entry.created",
        "payload": {
            "entity_type": "time_entry",
            "external_object": "TimeEntry",
            "external_id": f"T{i:09d}",
            "fields": {
                "person": f"P{i % 500:04d}",
                "project": f"PRJ{i % 2_000:05d}",
                "date": f"2026-03-{day:02d}",
                "hours": str(0.25 * (1 + i % 32)),
                "billable": i % 33 != 0,
                "status": "approved",
                "notes": f"work item {i}",
            },
        },
    }


def _first_waiting_seq(engine: Engine) -> int | None:
    """The lowest seq still waiting (pending or failed): cheap, by index."""
    with engine.connect() as conn:
        return Inbox(conn).first_waiting()


def _effects_open(engine: Engine) -> bool:
    """Whether any effect is still an intent or in doubt (FAILED and DONE are final)."""
    with engine.connect() as conn:
        return any(
            conn.execute(
                select(effects.c.idempotency_key).where(effects.c.status == status).limit(1)
            ).first()
            is not None
            for status in ("intent", "doubt")
        )


def _wait_until_processed(
    engine: Engine,
    timeout: float,
    poll: float = 0.05,
    alive: Callable[[], bool] = lambda: True,
) -> bool:
    """Poll cheaply until no inbox event waits and no effect is open, or time runs out.

    ``hub.worker.drain`` counts the inbox by status every 10 ms, which on one core
    steals a noticeable share from the worker while a backlog is large; this wait
    runs first and ``drain`` confirms at the end that no batch is still in flight.
    It also gives up as soon as ``alive`` says the processing side has gone.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _first_waiting_seq(engine) is None and not _effects_open(engine):
            return True
        if not alive():
            return False
        time.sleep(poll)
    return False


def retry_figures(engine: Engine) -> dict[str, int]:
    """What went other than first time: re-claimed events, retried effects, dead letters."""
    with engine.connect() as conn:

        def count(table: Any, *where: Any) -> int:
            return int(
                conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()
            )

        return {
            "events_claimed_more_than_once": count(inbox, inbox.c.attempts > 1),
            "events_dead": count(inbox, inbox.c.status == "dead"),
            "effects_attempted_more_than_once": count(effects, effects.c.attempts > 1),
            "effects_failed": count(effects, effects.c.status == "failed"),
        }


#: The first second of intake is left out of the steady rate (the first batches
#: fill and the pipeline warms up).
STEADY_WARMUP_S = 1.0


def _steady_rate(rows: Sequence[Any], done_ends: Sequence[datetime]) -> float | None:
    """Events whose effects were done while intake still ran, per second.

    The window runs from one second after the first event arrived to the last
    arrival. A hub that keeps up completes events at the offered rate within
    it; one that falls behind completes them at its own capacity, with the
    backlog growing.
    """
    received = [row[0] for row in rows]
    if not received or not done_ends:
        return None
    start = min(received) + timedelta(seconds=STEADY_WARMUP_S)
    stop = max(received)
    window = (stop - start).total_seconds()
    if window <= 0:
        return None
    return _rate(sum(1 for end in done_ends if start <= end <= stop), window)


def ledger_figures(engine: Engine, schedule: Schedule | None = None) -> dict[str, Any]:
    """Throughput and intake-to-effect latency, read back from the store.

    An event's latency runs from its ``inbox.received_at`` to the latest
    ``effects.updated_at`` of the effects its outcome lists, all of them done.
    The end-to-end span runs from the first ``received_at`` to the last effect done.

    With the intake's ``schedule``, a second latency runs from the time each
    event was due to arrive. ``received_at`` is taken when intake starts to
    store an event, so an event that arrived while intake was held up (by a
    batch's write, a checkpoint) starts its clock late; a sender waiting for
    its acknowledgement sees the second figure.
    """
    with engine.connect() as conn:
        done_at = dict(
            conn.execute(
                select(effects.c.idempotency_key, effects.c.updated_at).where(
                    effects.c.status == "done"
                )
            ).all()
        )
        rows = conn.execute(
            select(inbox.c.received_at, inbox.c.status, inbox.c.outcome, inbox.c.event_id)
        ).all()
    latencies: list[float] = []
    from_schedule: list[float] = []
    done_ends: list[datetime] = []
    events = len(rows)
    without_effects = not_done = 0
    first_received: datetime | None = None
    last_done: datetime | None = None
    for received_at, status, outcome, event_id in rows:
        first_received = received_at if first_received is None else min(first_received, received_at)
        keys = (outcome or {}).get("effects", []) if status == "done" else None
        if keys is None:
            not_done += 1
            continue
        if not keys:
            without_effects += 1
            continue
        finished = [done_at.get(key) for key in keys]
        if any(at is None for at in finished):
            not_done += 1
            continue
        end = max(at for at in finished if at is not None)
        last_done = end if last_done is None else max(last_done, end)
        latencies.append((end - received_at).total_seconds())
        done_ends.append(end)
        due = schedule.due(event_id) if schedule is not None else None
        if due is not None:
            from_schedule.append((end - due).total_seconds())
    latencies.sort()
    from_schedule.sort()
    steady = _steady_rate(rows, done_ends)
    span = (
        (last_done - first_received).total_seconds()
        if first_received is not None and last_done is not None
        else None
    )
    done = len(latencies)
    return {
        "events": events,
        "events_effect_done": done,
        "events_without_effects": without_effects,
        "events_not_done": not_done,
        "effects_done": len(done_at),
        "end_to_end_s": None if span is None else round(span, 3),
        "end_to_end_events_per_s": _rate(done, span),
        "steady_events_per_s": steady,
        "latency_ms": {
            "p50": _ms(_percentile(latencies, 50)),
            "p95": _ms(_percentile(latencies, 95)),
            "p99": _ms(_percentile(latencies, 99)),
            "max": _ms(latencies[-1] if latencies else None),
        },
        "latency_from_schedule_ms": None
        if schedule is None
        else {
            "p50": _ms(_percentile(from_schedule, 50)),
            "p95": _ms(_percentile(from_schedule, 95)),
            "p99": _ms(_percentile(from_schedule, 99)),
            "max": _ms(from_schedule[-1] if from_schedule else None),
        },
    }


def _runtime_settings(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "batch_size": args.batch_size,
        "max_batch_size": args.max_batch_size
        or RuntimeSettings(batch_size=args.batch_size).largest_batch,
        "batch_wait_ms": args.batch_wait_ms,
        "concurrency": args.concurrency,
        "background_checkpoint": not args.commit_checkpoints,
        "gc_threshold": args.gc_threshold,
        "prepared_workflow_statements": not args.dbos_statements_per_call,
    }


class RecorderProcess:
    """The recorder stand-in as its own process (``accord sandbox serve recorder``).

    The fake vendor is another system: in its own process it takes no time of the
    hub's core, as a real vendor would not. It runs on the CPUs the hub is not
    pinned to (on a one-CPU machine, on that CPU)."""

    def __init__(self, avoid_cpu: int | None) -> None:
        self._avoid = avoid_cpu
        self._proc: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> RecorderProcess:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "accord.cli", "sandbox", "serve", "recorder", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if hasattr(os, "sched_setaffinity"):
            others = set(range(os.cpu_count() or 1)) - {self._avoid}
            if others:
                os.sched_setaffinity(self._proc.pid, others)
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if " on http://" not in line:
            self._proc.kill()
            raise RuntimeError(f"the recorder process did not start: {line.strip()!r}")
        self.url = line.split(" on ", 1)[1].split()[0]
        return self

    def stats(self) -> dict[str, Any]:
        answer: dict[str, Any] = httpx.get(f"{self.url}/v1/stats", timeout=30).json()
        return answer

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


Recorder = RecorderServer | RecorderProcess


def recorder_for(args: argparse.Namespace, *, hub_pinned: bool = True) -> Recorder:
    """Where the effects go: a recorder process (default) or a thread of this process."""
    if args.vendor_in_process:
        return RecorderServer()
    return RecorderProcess(args.pinned_cpu if hub_pinned else None)


@contextmanager
def embedded_hub(
    args: argparse.Namespace,
    directory: Path,
    name: str,
    recorder: Recorder,
    *,
    policy: OwnershipPolicy,
    routes: list[Route],
    dispatch: bool = True,
) -> Iterator[Hub]:
    """A started hub on a fresh SQLite file, its ERP effects going to ``recorder``."""
    settings = Settings.model_validate(
        {"database_url": f"sqlite:///{directory / name}", "runtime": _runtime_settings(args)}
    )
    hub = build_hub(
        settings,
        vendors={"erp": IdempotentHttpVendor(recorder.url)},
        routes=routes,
        policy=policy,
    )
    hub.start(dispatch=dispatch)
    try:
        yield hub
    finally:
        hub.stop()


def _progress(args: argparse.Namespace, message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- 1. embedded SQLite ------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """When each event of the sustained intake was due: ``evt-<i>`` at ``start + i × interval``."""

    start: datetime
    interval: float

    def due(self, event_id: str) -> datetime | None:
        prefix, _, number = event_id.partition("-")
        if prefix != "evt" or not number.isdigit():
            return None
        return self.start + timedelta(seconds=int(number) * self.interval)


def _intake(hub: Hub, rate: float, seconds: float, out: dict[str, Any]) -> None:
    """Ingest one event per call on schedule; behind schedule it ingests flat out."""
    ingest = hub.pipeline.ingest
    interval = 1.0 / rate
    i = 0
    started = time.perf_counter()
    out["schedule"] = Schedule(_now(), interval)
    stop_at = started + seconds
    try:
        while True:
            now = time.perf_counter()
            if now >= stop_at:
                break
            due = started + i * interval
            if due > now:
                time.sleep(due - now)
            event = account_event(i)
            ingest(event["system"], event["event_id"], event["event_type"], event["payload"])
            i += 1
    except Exception as exc:  # reported, not raised: the figures so far still count
        out["error"] = repr(exc)
    out["events"] = i
    out["seconds"] = time.perf_counter() - started


def measure_sustained(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    with (
        recorder_for(args) as recorder,
        embedded_hub(
            args, directory, "sustained.db", recorder, policy=ACCOUNT_POLICY, routes=[ACCOUNT_ROUTE]
        ) as hub,
    ):
        cpu_start = time.process_time()
        wall_start = time.perf_counter()
        intake: dict[str, Any] = {}
        thread = threading.Thread(
            target=_intake, args=(hub, args.rate, args.seconds, intake), name="bench-intake"
        )
        thread.start()
        thread.join()
        backlog_at_end = 0
        first_waiting = _first_waiting_seq(hub.engine)
        if first_waiting is not None:
            with hub.engine.connect() as conn:
                last = conn.execute(select(func.max(inbox.c.seq))).scalar() or 0
            backlog_at_end = last - first_waiting + 1
        settled = _wait_until_processed(hub.engine, args.settle_timeout)
        settled = hub.worker.drain(60) and settled
        wall = time.perf_counter() - wall_start
        cpu = time.process_time() - cpu_start
        figures = ledger_figures(hub.engine, intake.get("schedule"))
        retries = retry_figures(hub.engine)
        objects = recorder.stats()["objects"]
    return {
        "target_rate": args.rate,
        "seconds": args.seconds,
        "intake_events": intake.get("events", 0),
        "intake_s": round(intake.get("seconds", 0.0), 3),
        "intake_events_per_s": _rate(intake.get("events", 0), intake.get("seconds")),
        "intake_error": intake.get("error"),
        "backlog_when_intake_stopped": backlog_at_end,
        "settled": settled,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "cpu_share_of_wall": round(cpu / wall, 3) if wall else None,
        "recorder_objects": objects,
        "peak_rss_mb": _peak_rss_mb(),
        **figures,
        "retries": retries,
    }


def measure_drain(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    with (
        recorder_for(args) as recorder,
        embedded_hub(
            args,
            directory,
            "drain.db",
            recorder,
            policy=ACCOUNT_POLICY,
            routes=[ACCOUNT_ROUTE],
            dispatch=False,
        ) as hub,
    ):
        events = [account_event(i, prefix="drain") for i in range(args.drain)]
        started = time.perf_counter()
        hub.pipeline.ingest_many(events)
        ingest_s = time.perf_counter() - started
        del events
        cpu_start = time.process_time()
        started = time.perf_counter()
        hub.worker.start()
        settled = _wait_until_processed(hub.engine, args.settle_timeout)
        settled = hub.worker.drain(60) and settled
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu_start
        figures = ledger_figures(hub.engine)
        retries = retry_figures(hub.engine)
        objects = recorder.stats()["objects"]
    done = figures["events_effect_done"]
    return {
        "events": args.drain,
        "ingest_s": round(ingest_s, 3),
        "drain_s": round(seconds, 3),
        "drain_events_per_s": _rate(done, seconds),
        "cpu_s": round(cpu, 3),
        "settled": settled,
        "events_effect_done": done,
        "recorder_objects": objects,
        "latency_ms": figures["latency_ms"],
        "retries": retries,
    }


# -- 2. PostgreSQL with worker processes -------------------------------------------


def _pg_connect() -> Any:
    import psycopg

    return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)


def pg_unavailable() -> str | None:
    """Why PostgreSQL cannot be used, or None when it answers."""
    try:
        with _pg_connect():
            return None
    except ImportError as exc:
        return f"psycopg is not installed ({exc})"
    except Exception as exc:
        text = str(exc).strip().splitlines()
        return f"{PG_ADMIN_URL} does not answer ({text[0] if text else type(exc).__name__})"


def _worker_config(directory: Path, database_url: str, recorder_url: str, args: Any) -> Path:
    runtime = _runtime_settings(args)
    config = directory / "accord.yaml"
    config.write_text(
        f"""\
accord: 1
database_url: "{database_url}"
runtime:
  batch_size: {runtime["batch_size"]}
  max_batch_size: {runtime["max_batch_size"]}
  batch_wait_ms: {runtime["batch_wait_ms"]}
  concurrency: {runtime["concurrency"]}
systems:
  crm: {{role: crm, connector: passthrough}}
  erp: {{role: erp, connector: recorder, base_url: "{recorder_url}"}}
routes:
  - {{entity_type: account, target: erp, operation: upsert_customer}}
ownership:
  ownership:
    systems: {{crm: crm, erp: erp}}
    account: {{owner: crm}}
""",
        encoding="utf-8",
    )
    return config


def _wait_for_workers(procs: list[subprocess.Popen[bytes]], logs: list[Path]) -> str | None:
    """Wait until every worker says it is running; the reason if one does not."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        for proc, log in zip(procs, logs, strict=True):
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-800:]
                return f"worker exited with {proc.returncode}: {tail}"
        if all("running on" in log.read_text(errors="replace") for log in logs):
            return None
        time.sleep(0.1)
    return "workers did not report running within 90 s"


def _worker_log_notes(run_dir: Path) -> list[str]:
    """The last unusual lines of the worker logs (beyond 'running' and 'stopped')."""
    notes: list[str] = []
    for log in sorted(run_dir.glob("worker-*.log")):
        lines = log.read_text(errors="replace").splitlines()
        odd = [line for line in lines if not line.startswith("accord worker ")]
        notes += [f"{log.stem}: {line[:300]}" for line in odd[-10:]]
    return notes


def measure_pg(args: argparse.Namespace, workers: int, directory: Path) -> dict[str, Any]:
    name = f"accord_bench_{uuid.uuid4().hex[:12]}"
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    database_url = f"{base}/{name}"
    with _pg_connect() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    procs: list[subprocess.Popen[bytes]] = []
    result: dict[str, Any] = {"workers": workers, "events": args.pg_events, "database": name}
    try:
        with recorder_for(args, hub_pinned=False) as recorder:
            run_dir = directory / f"pg-{workers}"
            run_dir.mkdir()
            config = _worker_config(run_dir, database_url, recorder.url, args)
            settings = Settings.model_validate(
                {"database_url": database_url, "runtime": _runtime_settings(args)}
            )
            # Not started: this hub only migrates the store and ingests; the workers process.
            hub = build_hub(settings, vendors={}, routes=[ACCOUNT_ROUTE], policy=ACCOUNT_POLICY)
            logs = [run_dir / f"worker-{n}.log" for n in range(workers)]
            for n, log in enumerate(logs):
                env = {
                    **os.environ,
                    "ACCORD_CONFIG": str(config),
                    "ACCORD_WORKER_ID": f"bench-{workers}-{n}",
                }
                with log.open("ab") as out:
                    procs.append(
                        subprocess.Popen(
                            [sys.executable, "-m", "accord.cli", "worker"],
                            env=env,
                            stdout=out,
                            stderr=out,
                        )
                    )
            problem = _wait_for_workers(procs, logs)
            if problem:
                result["error"] = problem
                hub.stop()
                return result
            events = [account_event(i, prefix=f"pg{workers}") for i in range(args.pg_events)]
            cpu_start = time.process_time()
            started = time.perf_counter()
            for start in range(0, len(events), PG_CHUNK):
                hub.pipeline.ingest_many(events[start : start + PG_CHUNK], chunk=PG_CHUNK)
            ingest_s = time.perf_counter() - started
            settled = _wait_until_processed(
                hub.engine,
                args.settle_timeout,
                poll=0.1,
                alive=lambda: all(proc.poll() is None for proc in procs),
            )
            wall = time.perf_counter() - started
            bench_cpu = time.process_time() - cpu_start
            figures = ledger_figures(hub.engine)
            retries = retry_figures(hub.engine)
            hub.stop()
            result.update(
                {
                    "ingest_s": round(ingest_s, 3),
                    "wall_s": round(wall, 3),
                    "settled": settled,
                    "bench_process_cpu_s": round(bench_cpu, 3),
                    "recorder_objects": recorder.stats()["objects"],
                    **figures,
                    "retries": retries,
                    "workers_alive_at_end": sum(proc.poll() is None for proc in procs),
                }
            )
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        notes = _worker_log_notes(directory / f"pg-{workers}")
        if notes:
            result["worker_log"] = notes
        try:
            with _pg_connect() as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            result["dropped"] = True
        except Exception as exc:  # report, never hide, a database left behind
            result["dropped"] = False
            result["drop_error"] = repr(exc)
    return result


# -- 3. backfill ------------------------------------------------------------------


def measure_backfill(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    total = args.backfill
    routes = [ACCOUNT_ROUTE, TIME_ENTRY_ROUTE] if args.backfill_effects else [ACCOUNT_ROUTE]
    with (
        recorder_for(args) as recorder,
        embedded_hub(
            args,
            directory,
            "backfill.db",
            recorder,
            policy=BACKFILL_POLICY,
            routes=routes,
            dispatch=False,
        ) as hub,
    ):
        ingest_s = 0.0
        ingest_wall_start = time.perf_counter()
        for start in range(0, total, BACKFILL_CHUNK):
            chunk = [time_entry_event(i) for i in range(start, min(start + BACKFILL_CHUNK, total))]
            began = time.perf_counter()
            hub.pipeline.ingest_many(chunk, chunk=BACKFILL_CHUNK)
            ingest_s += time.perf_counter() - began
        ingest_wall = time.perf_counter() - ingest_wall_start
        with hub.engine.connect() as conn:
            first_seq = conn.execute(select(func.min(inbox.c.seq))).scalar() or 1
        _progress(args, f"  backfill: {total:,} ingested in {ingest_s:.1f} s; processing …")

        cpu_start = time.process_time()
        started_at = _now()
        started = time.perf_counter()
        hub.worker.start()
        probe: dict[str, Any] | None = None
        extrapolated = False
        completed = False
        deadline = started + BACKFILL_LIMIT_S * 1.5
        while time.perf_counter() < deadline:
            waiting = _first_waiting_seq(hub.engine)
            done = total if waiting is None else waiting - first_seq
            elapsed = time.perf_counter() - started
            if probe is None and total > PROBE_EVENTS and done >= PROBE_EVENTS:
                rate = done / elapsed
                projected = ingest_s + total / rate
                probe = {
                    "events": done,
                    "seconds": round(elapsed, 3),
                    "events_per_s": round(rate, 1),
                    "projected_processing_s": round(total / rate, 1),
                    "projected_total_s": round(projected, 1),
                }
                _progress(
                    args,
                    f"  backfill: first {done:,} in {elapsed:.1f} s → {rate:,.0f}/s, "
                    f"projected total {projected:,.0f} s",
                )
                if projected > BACKFILL_LIMIT_S:
                    extrapolated = True
                    break
            if waiting is None and not _effects_open(hub.engine):
                completed = hub.worker.drain(60)
                break
            time.sleep(0.25)
        hub.worker.stop(timeout=60)
        cpu = time.process_time() - cpu_start
        with hub.engine.connect() as conn:
            done_count = conn.execute(
                select(func.count()).select_from(inbox).where(inbox.c.status == "done")
            ).scalar_one()
            last_processed = conn.execute(select(func.max(inbox.c.processed_at))).scalar()
            last_effect = conn.execute(
                select(func.max(effects.c.updated_at)).where(effects.c.status == "done")
            ).scalar()
            effects_done = conn.execute(
                select(func.count()).select_from(effects).where(effects.c.status == "done")
            ).scalar_one()
        ends = [at for at in (last_processed, last_effect) if at is not None]
        processing_s = (max(ends) - started_at).total_seconds() if ends else None
        objects = recorder.stats()["objects"]
    result: dict[str, Any] = {
        "events": total,
        "effects": "one ERP effect per time entry"
        if args.backfill_effects
        else "none (time_entry has no route)",
        "chunk": BACKFILL_CHUNK,
        "ingest_s": round(ingest_s, 3),
        "ingest_wall_s": round(ingest_wall, 3),
        "ingest_events_per_s": _rate(total, ingest_s),
        "events_done": done_count,
        "effects_done": effects_done,
        "recorder_objects": objects,
        "probe": probe,
        "extrapolated": extrapolated,
        "completed": completed,
        "processing_cpu_s": round(cpu, 3),
        "peak_rss_mb": _peak_rss_mb(),
    }
    if extrapolated and probe is not None:
        result.update(
            {
                "processing_s": probe["projected_processing_s"],
                "total_s": probe["projected_total_s"],
                "events_per_s": round(total / probe["projected_total_s"], 1),
                "processing_events_per_s": probe["events_per_s"],
                "measured_processing_s": round(processing_s or 0.0, 3),
            }
        )
    else:
        processed = processing_s or 0.0
        result.update(
            {
                "processing_s": round(processed, 3),
                "total_s": round(ingest_s + processed, 3),
                "events_per_s": _rate(done_count, ingest_s + processed),
                "processing_events_per_s": _rate(done_count, processed),
            }
        )
    return result


# -- report -----------------------------------------------------------------------


def _verdict(met: bool | None) -> str:
    return "—" if met is None else ("met" if met else "NOT met")


def _fmt(value: float | None, unit: str = "", digits: int = 0) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}{unit}"


def _n8n(value: float | None) -> str:
    return "n/a" if not value else f"{value / N8N_EXECUTIONS_PER_S:.1f}×"


def keeps_pace(s: dict[str, Any]) -> bool:
    """Whether the hub kept up with the offered rate: intake reached 99 % of it,
    completions while intake ran 99 % of it, less than half a second of events
    waited when intake stopped, and all were processed afterwards."""
    offered = s["target_rate"]
    return bool(
        (s["intake_events_per_s"] or 0.0) >= 0.99 * offered
        and (s["steady_events_per_s"] or 0.0) >= 0.99 * offered
        and s["backlog_when_intake_stopped"] < 0.5 * offered
        and s["settled"]
    )


def keeps_up(s: dict[str, Any]) -> bool:
    """Whether the hub sustained the target: it kept pace with an offered rate of
    at least the target."""
    return s["target_rate"] >= TARGET_EVENTS_PER_S and keeps_pace(s)


def summary_rows(f: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(figure, measured, target, verdict, ratio to n8n) rows."""
    rows: list[tuple[str, str, str, str, str]] = []
    s = f.get("sustained")
    if s:
        e2e = s["end_to_end_events_per_s"]
        p99 = s["latency_ms"]["p99"]
        offered = f"offered {s['target_rate']:,}/s"
        rows += [
            (
                f"embedded intake achieved ({offered})",
                _fmt(s["intake_events_per_s"], "/s"),
                "—",
                "—",
                "",
            ),
            (
                "embedded sustained, 1 core: completed while intake ran",
                _fmt(s["steady_events_per_s"], "/s"),
                f"keeps up with {TARGET_EVENTS_PER_S:,}/s",
                _verdict(keeps_up(s)),
                _n8n(s["steady_events_per_s"]),
            ),
            ("embedded end to end (first intake → last effect)", _fmt(e2e, "/s"), "—", "—", ""),
            (
                "embedded latency p99, intake → effect",
                _fmt(p99, " ms", 1),
                f"< {TARGET_P99_MS:.0f} ms",
                _verdict(p99 is not None and p99 < TARGET_P99_MS),
                "",
            ),
        ]
        due = (s.get("latency_from_schedule_ms") or {}).get("p99")
        if due is not None:
            rows.append(
                (
                    "embedded latency p99, due arrival → effect",
                    _fmt(due, " ms", 1),
                    f"< {TARGET_P99_MS:.0f} ms",
                    _verdict(due < TARGET_P99_MS),
                    "",
                )
            )
    d = f.get("drain")
    if d:
        rate = d["drain_events_per_s"]
        rows.append(
            (
                f"embedded drain of {d['events']:,}",
                _fmt(rate, "/s"),
                f"≥ {TARGET_EVENTS_PER_S:,}/s",
                _verdict(rate is not None and rate >= TARGET_EVENTS_PER_S and d["settled"]),
                _n8n(rate),
            )
        )
    for run in f.get("postgres", {}).get("runs", []):
        if "error" in run:
            rows.append((f"PostgreSQL, {run['workers']} worker(s)", "error", "—", "—", ""))
            continue
        rate = run["end_to_end_events_per_s"]
        rows.append(
            (
                f"PostgreSQL, {run['workers']} worker(s)",
                _fmt(rate, "/s"),
                "—",
                "—",
                _n8n(rate),
            )
        )
    b = f.get("backfill")
    if b:
        mark = " (extrapolated)" if b["extrapolated"] else ""
        rows += [
            (
                f"backfill of {b['events']:,} total{mark}",
                _fmt(b["total_s"], " s", 1),
                f"< {TARGET_BACKFILL_S:.0f} s",
                _verdict(
                    b["total_s"] < TARGET_BACKFILL_S and (b["completed"] or b["extrapolated"])
                ),
                "",
            ),
            (
                f"backfill events/s{mark}",
                _fmt(b["events_per_s"], "/s"),
                "—",
                "—",
                _n8n(b["events_per_s"]),
            ),
        ]
    return rows


def _table(rows: list[tuple[str, str, str, str, str]]) -> list[str]:
    header = ("figure", "measured", "target", "verdict", f"vs n8n {N8N_EXECUTIONS_PER_S}/s")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]

    def line(r: tuple[str, ...]) -> str:
        return "  " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()

    return [line(header), "  " + "-+-".join("-" * w for w in widths), *map(line, rows)]


def _latency(lat: dict[str, Any]) -> str:
    return (
        f"p50 {_fmt(lat['p50'], ' ms', 1)}, p95 {_fmt(lat['p95'], ' ms', 1)},"
        f" p99 {_fmt(lat['p99'], ' ms', 1)}, max {_fmt(lat['max'], ' ms', 1)}"
    )


def _retries(r: dict[str, int]) -> str:
    return (
        f"events claimed more than once {r['events_claimed_more_than_once']:,},"
        f" dead {r['events_dead']:,}; effects attempted more than once"
        f" {r['effects_attempted_more_than_once']:,}, failed {r['effects_failed']:,}"
    )


def report(f: dict[str, Any]) -> str:
    rt = f["runtime"]
    out = [
        f"runtime benchmark (Python {f['python']}, {f['cpus']} CPUs; embedded parts pinned to"
        f" CPU {f['pinned_cpu']}; runtime batch_size {rt['batch_size']},"
        f" max_batch_size {rt['max_batch_size']},"
        f" batch_wait_ms {rt['batch_wait_ms']}, concurrency {rt['concurrency']},"
        f" gc_threshold {rt['gc_threshold']}"
        + ("" if rt["background_checkpoint"] else ", checkpoints in commits")
        + ("" if rt["prepared_workflow_statements"] else ", DBOS statements per call")
        + ")",
        "  machine busy with other work just before each part (share of all CPUs, 1 s sample): "
        + ", ".join(
            f"{part} {_fmt(None if share is None else share * 100, ' %')}"
            for part, share in f["machine_busy_before"].items()
        ),
    ]
    ref = f.get("machine_reference")
    if ref:
        out.append(
            "  this machine now, on the hub's core (nothing of Accord): raw SQLite"
            f" {ref['sqlite_tx_per_s']:,} one-row transactions/s (ARCHITECTURE's note:"
            f" about {ARCHITECTURE_SQLITE_TX_PER_S:,}/s on this kind of machine);"
            f" Python {ref['python_units_per_s']:,} JSON+hash units/s"
        )
    if any((share or 0) > 0.1 for share in f["machine_busy_before"].values()):
        out.append(
            "  WARNING: other processes were using the CPUs; the figures understate this machine"
        )
    s = f.get("sustained")
    if s:
        out += [
            "1. embedded SQLite, sustained (the hub in one process on one core; fake vendor:"
            f" {f['vendor']})",
            f"  intake {s['intake_events']:,} events in {s['intake_s']:.1f} s"
            f" → {_fmt(s['intake_events_per_s'], '/s')} achieved"
            f" (offered {s['target_rate']:,}/s for {s['seconds']:g} s)"
            + (f"; intake error {s['intake_error']}" if s["intake_error"] else ""),
            f"  backlog when intake stopped {s['backlog_when_intake_stopped']:,} events;"
            f" all processed: {'yes' if s['settled'] else 'NO (settle timeout)'}",
            f"  completed while intake ran (from its second second):"
            f" {_fmt(s['steady_events_per_s'], ' events/s')}"
            f" → {'keeps up with' if keeps_pace(s) else 'does NOT keep up with'} the offered rate",
            f"  end to end {s['events_effect_done']:,} events with their effect done in"
            f" {_fmt(s['end_to_end_s'], ' s', 2)} (first intake → last effect done)"
            f" → {_fmt(s['end_to_end_events_per_s'], ' events/s')}",
            f"  intake → effect latency {_latency(s['latency_ms'])}",
            "  due arrival → effect latency"
            f" {_latency(s['latency_from_schedule_ms'] or {})}"
            " (from when each event was due to arrive: also the time it waited to be taken in)",
            f"  CPU {s['cpu_s']:.1f} s over {s['wall_s']:.1f} s wall"
            f" ({(s['cpu_share_of_wall'] or 0) * 100:.0f} % of the core);"
            f" peak RSS {s['peak_rss_mb']:,.0f} MB; recorder objects {s['recorder_objects']:,}",
            f"  {_retries(s['retries'])}",
        ]
    d = f.get("drain")
    if d:
        out += [
            f"  drain: {d['events']:,} events ingested up front with ingest_many"
            f" ({d['ingest_s']:.2f} s), processed in {d['drain_s']:.2f} s"
            f" → {_fmt(d['drain_events_per_s'], ' events/s')} (CPU {d['cpu_s']:.1f} s;"
            f" {d['events_effect_done']:,} effects done, recorder objects"
            f" {d['recorder_objects']:,})",
            f"    {_retries(d['retries'])}",
        ]
    pg = f.get("postgres")
    if pg is not None:
        out.append(
            "2. PostgreSQL, accord worker subprocesses; fake vendor:"
            + (" a thread of the bench process" if f["vendor"] != "own process" else " own process")
        )
        if pg.get("skipped"):
            out.append(f"  skipped: {pg['skipped']}")
        for run in pg.get("runs", []):
            if "error" in run:
                out.append(f"  {run['workers']} worker(s): error: {run['error']}")
                out += [f"    log {line}" for line in run.get("worker_log", [])]
                continue
            out += [
                f"  {run['workers']} worker(s): {run['events']:,} events (ingested in"
                f" {run['ingest_s']:.2f} s in chunks of {PG_CHUNK:,})"
                f" → {run['events_effect_done']:,} effects done in"
                f" {_fmt(run['end_to_end_s'], ' s', 2)}"
                f" → {_fmt(run['end_to_end_events_per_s'], ' events/s')}"
                + ("" if run["settled"] else " (NOT all processed: settle timeout)"),
                f"    latency {_latency(run['latency_ms'])} (a burst: mostly queueing);"
                f" bench process CPU {run['bench_process_cpu_s']:.1f} s;"
                f" database dropped: {'yes' if run.get('dropped') else 'NO'}",
                f"    {_retries(run['retries'])}; workers still running at the end"
                f" {run['workers_alive_at_end']}/{run['workers']}",
            ]
            out += [f"    log {line}" for line in run.get("worker_log", [])]
    b = f.get("backfill")
    if b:
        out.append(
            f"3. backfill: {b['events']:,} time-entry events, ingest_many in chunks of"
            f" {b['chunk']:,}, effects: {b['effects']}"
        )
        out.append(
            f"  ingest {b['ingest_s']:.1f} s → {_fmt(b['ingest_events_per_s'], ' events/s')}"
        )
        if b["probe"]:
            p = b["probe"]
            out.append(
                f"  first {p['events']:,} processed in {p['seconds']:.1f} s"
                f" → {p['events_per_s']:,.0f}/s; projected total {p['projected_total_s']:,.0f} s"
            )
        if b["extrapolated"]:
            out += [
                f"  STOPPED after the first {PROBE_EVENTS:,}: the projected total exceeds"
                f" {BACKFILL_LIMIT_S / 60:.0f} minutes. The figures below are EXTRAPOLATED from"
                " that rate, not measured:",
                f"  processing ≈ {b['processing_s']:,.0f} s, total ≈ {b['total_s']:,.0f} s"
                f" ({b['total_s'] / 60:.1f} min) → ≈ {_fmt(b['events_per_s'], ' events/s')}",
            ]
        else:
            out.append(
                f"  processing {b['processing_s']:.1f} s"
                f" ({_fmt(b['processing_events_per_s'], ' events/s')}), total"
                f" {b['total_s']:.1f} s → {_fmt(b['events_per_s'], ' events/s')};"
                f" {b['events_done']:,} done"
                + ("" if b["completed"] else " (NOT completed: time limit)")
            )
        out.append(
            f"  processing CPU {b['processing_cpu_s']:.1f} s; peak RSS {b['peak_rss_mb']:,.0f} MB"
        )
    out += [
        "summary",
        *_table(summary_rows(f)),
        f"  peer: n8n documents up to {N8N_EXECUTIONS_PER_S} workflow executions/s on one"
        f" instance ({N8N_SOURCE}); other hardware and other work per execution.",
    ]
    return "\n".join(out)


# -- command line -----------------------------------------------------------------


ACCOUNT_POLICY = load_policy(ACCOUNT_POLICY_YAML, source="bench account policy")
BACKFILL_POLICY = load_policy(BACKFILL_POLICY_YAML, source="bench backfill policy")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    defaults = RuntimeSettings()
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=5_000, help="offered intake events/s")
    parser.add_argument("--seconds", type=float, default=60.0, help="intake duration")
    parser.add_argument("--drain", type=int, default=20_000, metavar="N")
    parser.add_argument("--pg-events", type=int, default=20_000, metavar="N")
    parser.add_argument("--backfill", type=int, default=1_000_000, metavar="N")
    parser.add_argument(
        "--backfill-effects",
        action="store_true",
        help="route time entries to the ERP, so the backfill also performs one effect each",
    )
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument(
        "--max-batch-size",
        type=int,
        default=None,
        help="how far a batch grows during a backlog (default: the runtime's)",
    )
    parser.add_argument("--batch-wait-ms", type=int, default=defaults.batch_wait_ms)
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency)
    parser.add_argument(
        "--gc-threshold",
        type=int,
        default=defaults.gc_threshold,
        help="runtime.gc_threshold: allocations between two young-generation collections",
    )
    parser.add_argument(
        "--commit-checkpoints",
        action="store_true",
        help="leave WAL checkpoints to the commits (runtime.background_checkpoint: false)",
    )
    parser.add_argument(
        "--dbos-statements-per-call",
        action="store_true",
        help="let DBOS build its SQLite statements on every call"
        " (runtime.prepared_workflow_statements: false)",
    )
    parser.add_argument(
        "--settle-timeout",
        type=float,
        default=600.0,
        metavar="S",
        help="how long to wait for a backlog to be processed",
    )
    parser.add_argument(
        "--vendor-in-process",
        action="store_true",
        help="serve the fake vendor from a thread of the hub's process (on its core)"
        " instead of its own process",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--skip-pg", action="store_true")
    parser.add_argument("--skip-backfill", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args(argv)
    if args.quick:
        for name, value in QUICK.items():
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, value)
    if args.rate <= 0 or args.seconds <= 0:
        parser.error("--rate and --seconds must be positive")
    for name in ("drain", "pg_events", "backfill"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def _pin() -> tuple[set[int], int | None, Callable[[], None], Callable[[], None]]:
    """Pin this thread (and the threads it starts) to its first allowed CPU."""
    if not hasattr(os, "sched_setaffinity"):
        return set(), None, lambda: None, lambda: None
    allowed = os.sched_getaffinity(0)
    first = min(allowed)

    def pin() -> None:
        os.sched_setaffinity(0, {first})

    def unpin() -> None:
        os.sched_setaffinity(0, allowed)

    return allowed, first, pin, unpin


def measure(args: argparse.Namespace) -> dict[str, Any]:
    allowed, first_cpu, pin, unpin = _pin()
    args.pinned_cpu = first_cpu
    figures: dict[str, Any] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "allowed_cpus": sorted(allowed),
        "pinned_cpu": first_cpu,
        "quick": args.quick,
        "vendor": "thread of the hub's process" if args.vendor_in_process else "own process",
        "runtime": _runtime_settings(args),
        "targets": {
            "sustained_events_per_s": TARGET_EVENTS_PER_S,
            "p99_ms": TARGET_P99_MS,
            "backfill_s": TARGET_BACKFILL_S,
        },
        "peer": {"n8n_executions_per_s": N8N_EXECUTIONS_PER_S, "source": N8N_SOURCE},
    }
    busy: dict[str, float | None] = {}
    figures["machine_busy_before"] = busy
    with tempfile.TemporaryDirectory(prefix="accord-bench-") as tmp:
        directory = Path(tmp)
        pin()
        figures["machine_reference"] = machine_reference(directory)
        _progress(args, f"1. embedded sustained: {args.rate:,.0f}/s for {args.seconds:g} s …")
        busy["sustained"] = machine_busy()
        figures["sustained"] = measure_sustained(args, directory)
        _progress(args, f"   drain of {args.drain:,} …")
        busy["drain"] = machine_busy()
        figures["drain"] = measure_drain(args, directory)
        if args.skip_pg:
            figures["postgres"] = {"skipped": "--skip-pg"}
        else:
            unpin()  # the worker processes (and the recorder) may use every allowed CPU
            why = pg_unavailable()
            if why:
                figures["postgres"] = {"skipped": why}
            else:
                runs = []
                for workers in (1, 2):
                    _progress(args, f"2. PostgreSQL, {workers} worker(s), {args.pg_events:,} …")
                    busy[f"postgres_{workers}"] = machine_busy()
                    runs.append(measure_pg(args, workers, directory))
                figures["postgres"] = {"runs": runs}
            pin()
        if not args.skip_backfill:
            _progress(args, f"3. backfill of {args.backfill:,} time entries …")
            busy["backfill"] = machine_busy()
            figures["backfill"] = measure_backfill(args, directory)
    figures["peak_rss_mb"] = _peak_rss_mb()
    figures["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    return figures


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    real_stdout = sys.stdout
    if args.json:
        sys.stdout = sys.stderr  # anything a library prints must not break the JSON
    try:
        figures = measure(args)
    finally:
        sys.stdout = real_stdout
    if args.json:
        print(json.dumps(figures, default=str))
    else:
        print(report(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
