"""Configured and scheduled runs: the ``reconcile:`` section put to work.

:func:`run_configured` reconciles the configured pairs from their configured
sources; ``accord reconcile --pair`` and the schedule both call it. The
schedule is a DBOS scheduled workflow: :func:`apply_schedule` (called after
``DBOS.launch()``) creates or replaces the ``accord-reconcile`` schedule with
the cron of ``reconcile.schedule``, and each firing runs one checkpointed step
per pair, so a crash resumes at the pair it stopped in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from dbos import DBOS
from sqlalchemy import Engine

from accord.config import Settings
from accord.connectors.base import Connector, Governor
from accord.domain.ids import deterministic_id
from accord.errors import InvalidInput
from accord.ownership.policy import OwnershipPolicy
from accord.reconcile.connect import ReconcileWriter, build_connector, connector_side
from accord.reconcile.pairs import Pair, pair_named
from accord.reconcile.run import RunReport, reconcile_pair
from accord.reconcile.settings import SideSource
from accord.reconcile.sides import ConnectorSide, FileSide, Side, SqlSide
from accord.runtime.effects import EffectExecutor, Vendor
from accord.runtime.pipeline import SqlLedger
from accord.runtime.retry import RetryPolicy

__all__ = [
    "SCHEDULE_NAME",
    "Systems",
    "apply_schedule",
    "bind",
    "configured_pairs",
    "run_configured",
    "scheduled_reconciliation",
    "side_from",
    "switch_on",
]

#: The name of the DBOS schedule (one per instance).
SCHEDULE_NAME = "accord-reconcile"


def side_from(source: SideSource, engine: Engine | None, *, base: Path | None = None) -> Side:
    """The side a ``{file|table, key}`` source describes (systems: :class:`Systems`)."""
    if source.file is not None:
        path = Path(source.file)
        if base is not None and not path.is_absolute():
            path = base / path
        return FileSide(path, source.key)
    if engine is None:
        raise InvalidInput("a table source needs the store's database", field="table")
    if source.table is None:
        raise InvalidInput("a system source is read through its connector", field="system")
    return SqlSide(engine, source.table, source.key)


class Systems:
    """The connectors of the systems a run reads, built once from ``systems:`` and closed after.

    ``connectors`` replaces the configured ones (by system name): tests, or a
    caller that already holds them. Every call passes ``governor``, the quota
    governor shared with the rest of Accord's traffic to that vendor.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        connectors: Mapping[str, Connector] | None = None,
        governor: Governor | None = None,
    ) -> None:
        self.settings = settings
        self.governor = governor
        self._given = dict(connectors or {})
        self._built: dict[str, Connector] = {}

    def connector(self, system: str, *, where: str) -> Connector:
        if system in self._given:
            return self._given[system]
        if system not in self._built:
            config = self.settings.systems.get(system)
            if config is None:
                raise InvalidInput(
                    f"no system {system!r} in systems: (known: "
                    f"{', '.join(sorted(self.settings.systems)) or 'none'})",
                    record=where,
                    field="system",
                )
            self._built[system] = build_connector(
                system,
                config.connector,
                base_url=config.base_url,
                token=config.secret(),
                credentials=config.credentials(),
                governor=self.governor,
            )
        return self._built[system]

    def side(
        self, pair: Pair, source: SideSource, where: str, store: Engine | None = None
    ) -> ConnectorSide:
        """``source`` read through its system's connector; with ``store``, vendor ids
        resolve to the canonical ids the hub linked them to."""
        assert source.system is not None
        connector = self.connector(source.system, where=where)
        return connector_side(pair, connector, name=source.system, store=store)

    def executor(
        self, engine: Engine, pairs: Sequence[Pair], fallback: EffectExecutor | None
    ) -> EffectExecutor:
        """An executor writing fixes through the connectors read (others: ``fallback``'s)."""
        vendors: dict[str, Vendor] = {}
        if fallback is not None:
            for name in self.settings.systems:
                vendor = fallback.vendor(name)
                if vendor is not None:
                    vendors[name] = vendor
        for name, connector in {**self._built, **self._given}.items():
            vendors[name] = ReconcileWriter(connector, pairs)
        retry = self.settings.runtime.retry
        return EffectExecutor(
            SqlLedger(engine),
            vendors,
            RetryPolicy(
                initial_interval=retry.initial_interval,
                backoff_coefficient=retry.backoff_coefficient,
                maximum_interval=retry.maximum_interval,
                maximum_attempts=retry.maximum_attempts,
            ),
        )

    @property
    def used(self) -> bool:
        """Whether any side is read through a connector."""
        return bool(self._built or self._given)

    def close(self) -> None:
        for connector in self._built.values():
            connector.close()
        self._built.clear()


def configured_pairs(settings: Settings, names: Sequence[str] | None = None) -> list[str]:
    """The pairs to run: ``names``, else ``reconcile.pairs``, else every configured source."""
    config = settings.reconcile
    chosen = list(names) if names else list(config.pairs) or sorted(config.sources)
    for name in chosen:
        pair_named(name)
        if name not in config.sources:
            raise InvalidInput(
                f"no sources configured for pair {name!r}: add "
                f"reconcile.sources.{name}.left and .right to accord.yaml",
                record="reconcile.sources",
                field=name,
            )
        for position in ("left", "right"):
            system = getattr(config.sources[name], position).system
            if system is not None and system not in settings.systems:
                raise InvalidInput(
                    f"no system {system!r} in systems: (known: "
                    f"{', '.join(sorted(settings.systems)) or 'none'})",
                    record=f"reconcile.sources.{name}.{position}",
                    field="system",
                )
    return chosen


def run_configured(
    settings: Settings,
    *,
    policy: OwnershipPolicy,
    engine: Engine | None,
    executor: EffectExecutor | None = None,
    pairs: Sequence[str] | None = None,
    heal: bool = True,
    base: Path | None = None,
    connectors: Mapping[str, Connector] | None = None,
    governor: Governor | None = None,
    run_ids: Mapping[str, str] | None = None,
) -> list[RunReport]:
    """Reconcile the configured pairs; one stored run each.

    A ``system`` side is read through the system's connector, and with an
    ``engine`` its fixes are written through that connector as idempotent
    effects (the ledger in the store); ``executor`` keeps the other systems' vendors.
    ``run_ids`` names the run of a pair: the same id again is a retry of that
    run (the scheduled step derives it from its workflow), which writes nothing twice.
    """
    chosen = [pair_named(name) for name in configured_pairs(settings, pairs)]
    systems = Systems(settings, connectors=connectors, governor=governor)
    try:
        planned: list[tuple[Pair, Side, Side]] = []
        for pair in chosen:
            sources = settings.reconcile.sources[pair.name]
            sides: list[Side] = []
            for position, source in (("left", sources.left), ("right", sources.right)):
                if source.system is not None:
                    where = f"reconcile.sources.{pair.name}.{position}"
                    sides.append(systems.side(pair, source, where, engine))
                else:
                    sides.append(side_from(source, engine, base=base))
            planned.append((pair, sides[0], sides[1]))
        writes = executor
        if engine is not None and systems.used:
            writes = systems.executor(engine, chosen, executor)
        return [
            reconcile_pair(
                pair,
                left,
                right,
                policy=policy,
                engine=engine,
                executor=writes,
                heal=heal,
                run_id=(run_ids or {}).get(pair.name),
            )
            for pair, left, right in planned
        ]
    finally:
        systems.close()


_bound: dict[str, Callable[[str], dict[str, Any]]] = {}


def bind(run_pair: Callable[[str], dict[str, Any]]) -> None:
    """Give the scheduled workflow what runs one pair (the composition root calls it)."""
    _bound["run_pair"] = run_pair


@DBOS.step(retries_allowed=True, max_attempts=3, interval_seconds=1.0, backoff_rate=2.0)
def reconcile_step(pair: str) -> dict[str, Any]:
    try:
        run_pair = _bound["run_pair"]
    except KeyError:
        raise RuntimeError("scheduled reconciliation used before bind()") from None
    return run_pair(pair)


@DBOS.workflow()
def scheduled_reconciliation(at: datetime, context: Any) -> None:
    """One firing of the schedule: each pair in ``context["pairs"]``, one step each."""
    for pair in (context or {}).get("pairs", []):
        reconcile_step(pair)


def switch_on(
    settings: Settings,
    *,
    policy: OwnershipPolicy,
    engine: Engine,
    executor: EffectExecutor | None = None,
) -> bool:
    """Bind the scheduled workflow to this hub's store and apply ``reconcile.schedule``.

    Called by :meth:`accord.bootstrap.Hub.start` after ``DBOS.launch()``; each
    firing reconciles, heals and stores every scheduled pair. False when no
    schedule is configured.
    """

    def run_pair(name: str) -> dict[str, Any]:
        # one run id per firing and pair: a retried step is the same run, not a new one
        firing = DBOS.workflow_id
        run_ids = {name: deterministic_id("reconcile-run", firing, name)} if firing else None
        (report,) = run_configured(
            settings,
            policy=policy,
            engine=engine,
            executor=executor,
            pairs=[name],
            run_ids=run_ids,
        )
        return {"run_id": report.run_id, "pair": report.pair, "counts": report.counts}

    bind(run_pair)
    return apply_schedule(settings)


def apply_schedule(settings: Settings) -> bool:
    """Create or replace the DBOS schedule from ``reconcile.schedule``; False if none."""
    config = settings.reconcile
    if config.schedule is None:
        return False
    DBOS.apply_schedules(
        [
            {
                "schedule_name": SCHEDULE_NAME,
                "workflow_fn": scheduled_reconciliation,
                "schedule": config.schedule,
                "context": {"pairs": configured_pairs(settings)},
            }
        ]
    )
    return True
