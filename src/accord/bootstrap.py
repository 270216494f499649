"""The one composition root: everything that connects is built here, on request.

Nothing in Accord opens a database, a socket or a thread at import time. A
:class:`Hub` is assembled from :class:`~accord.config.Settings` — the store
engine (SQLite file or PostgreSQL), the migrations, DBOS with its system
database, the event stream (in-process or NATS JetStream), the vendors the
effects go to, and the dispatcher — then started and stopped explicitly.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from dbos import DBOS, DBOSConfig
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from accord.config import Settings
from accord.events.stream import EventStream, open_stream
from accord.ownership import OwnershipPolicy, default_policy, parse_policy
from accord.reconcile import schedule as reconcile_schedule  # registers its DBOS workflow
from accord.runtime.dbos_sqlite import use_prepared
from accord.runtime.effects import EffectExecutor, Vendor
from accord.runtime.http_vendor import IdempotentHttpVendor
from accord.runtime.pipeline import Handler, Pipeline, Route, SqlLedger
from accord.runtime.retry import RetryPolicy
from accord.runtime.worker import Worker
from accord.runtime.workflows import bind
from accord.store import make_engine, upgrade
from accord.store.checkpoint import WalCheckpointer

__all__ = ["Hub", "build_hub", "dbos_config", "system_database_url"]


def system_database_url(database_url: str) -> str:
    """Where DBOS keeps its workflow log: beside the SQLite file, or the same PostgreSQL."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        database = url.database or "accord.db"
        path = Path(database)
        return f"sqlite:///{path.with_name(path.stem + '-workflows' + (path.suffix or '.db'))}"
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def dbos_config(settings: Settings, executor_id: str | None = None) -> DBOSConfig:
    sys_url = system_database_url(settings.database_url)
    config: DBOSConfig = {
        "name": "accord",
        "system_database_url": sys_url,
        "log_level": os.environ.get("ACCORD_DBOS_LOG_LEVEL", "WARNING"),
        "executor_id": executor_id or os.environ.get("ACCORD_WORKER_ID", "local"),
    }
    if sys_url.startswith("sqlite"):
        # DBOS leaves SQLite at DELETE/FULL; WAL + NORMAL is what makes it fast.
        config["system_database_engine"] = make_engine(sys_url)
    else:
        # DBOS pings before every checkout by default: a round trip per step.
        config["db_engine_kwargs"] = {"pool_pre_ping": False, "pool_size": 10}
    return config


@dataclass
class Hub:
    settings: Settings
    engine: Engine
    pipeline: Pipeline
    worker: Worker
    stream: EventStream
    vendors: Mapping[str, Vendor]
    executor_id: str
    _launched: bool = field(default=False, init=False)
    _collector: tuple[int, int, int] | None = field(default=None, init=False)
    checkpointer: WalCheckpointer | None = field(default=None, init=False)

    def start(self, *, dispatch: bool = True) -> Hub:
        """Launch DBOS (recovering this executor's unfinished workflows), then dispatch."""
        bind(self.pipeline)
        use_prepared(self.settings.runtime.prepared_workflow_statements)
        DBOS(config=dbos_config(self.settings, self.executor_id))
        DBOS.launch()
        self._launched = True
        self._collector = _tune_collector(self.settings.runtime.gc_threshold)
        if self.settings.runtime.background_checkpoint:
            self.checkpointer = WalCheckpointer.for_engine(self.engine)
            if self.checkpointer is not None:
                self.checkpointer.start()
        reconcile_schedule.switch_on(
            self.settings,
            policy=self.pipeline.policy,
            engine=self.engine,
            executor=self.pipeline.executor,
        )
        if dispatch:
            self.worker.start()
        return self

    def stop(self) -> None:
        self.worker.stop()
        if self.checkpointer is not None:
            self.checkpointer.stop()
            self.checkpointer = None
        if self._collector is not None:
            gc.set_threshold(*self._collector)
            self._collector = None
        if self._launched:
            DBOS.destroy(destroy_registry=False)
            self._launched = False
        for vendor in self.vendors.values():
            close = getattr(vendor, "close", None)
            if callable(close):
                close()
        self.stream.close()
        self.pipeline.close()
        self.engine.dispose()

    def __enter__(self) -> Hub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _tune_collector(threshold: int) -> tuple[int, int, int] | None:
    """Run the cyclic collector less often (``runtime.gc_threshold``); returns the
    thresholds it replaced, for :meth:`Hub.stop` to put back."""
    if threshold <= 0:
        return None
    before = gc.get_threshold()
    gc.set_threshold(threshold, 50, 1_000)
    return before


def _policy(settings: Settings) -> OwnershipPolicy:
    if settings.ownership == "default":
        return default_policy()
    if isinstance(settings.ownership, Mapping):
        return parse_policy(settings.ownership, source="accord.yaml")
    raise ValueError(f"ownership must be 'default' or a mapping, not {settings.ownership!r}")


def _vendors(settings: Settings) -> dict[str, Vendor]:
    vendors: dict[str, Vendor] = {}
    for name, system in settings.systems.items():
        if system.connector in ("recorder", "http_idempotent") and system.base_url:
            vendors[name] = IdempotentHttpVendor(system.base_url)
    return vendors


def build_hub(
    settings: Settings,
    *,
    vendors: Mapping[str, Vendor] | None = None,
    handlers: Mapping[str, Handler] | None = None,
    routes: Sequence[Route] | None = None,
    policy: OwnershipPolicy | None = None,
    executor_id: str | None = None,
    lease: timedelta | None = None,
    **engine_options: Any,
) -> Hub:
    """Assemble a hub from settings; parts given here replace the configured ones."""
    engine = make_engine(settings.database_url, **engine_options)
    upgrade(engine)
    runtime = settings.runtime
    retry = RetryPolicy(
        initial_interval=runtime.retry.initial_interval,
        backoff_coefficient=runtime.retry.backoff_coefficient,
        maximum_interval=runtime.retry.maximum_interval,
        maximum_attempts=runtime.retry.maximum_attempts,
    )
    vendor_map = dict(vendors) if vendors is not None else _vendors(settings)
    stream = open_stream(settings.nats_url, instance=settings.instance)
    route_list = (
        list(routes)
        if routes is not None
        else [Route(r["entity_type"], r["target"], r["operation"]) for r in settings.routes]
    )
    pipeline = Pipeline(
        engine,
        policy or _policy(settings),
        EffectExecutor(SqlLedger(engine), vendor_map, retry),
        handlers=handlers,
        routes=route_list,
        stream=stream,
    )
    worker = Worker(pipeline, runtime, lease=lease or timedelta(seconds=runtime.lease_seconds))
    return Hub(
        settings,
        engine,
        pipeline,
        worker,
        stream,
        vendor_map,
        executor_id or os.environ.get("ACCORD_WORKER_ID", "local"),
    )
