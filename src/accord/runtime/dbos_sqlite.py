"""Prepared statements for DBOS's workflow log on SQLite.

Each batch is one DBOS workflow, and DBOS writes two rows for it: the
workflow's status and inputs when it starts, its status and output when it
ends. On PostgreSQL DBOS builds and compiles each of those statements once
and reuses the SQL (``SystemDatabase._execute_prepared``); on SQLite it
builds them again on every call, and the ending's ``UPDATE`` is a SQLAlchemy
expression built per call as well. Building and compiling cost several times
what SQLite spends running the statements: measured in the running hub in a
slow hour, starting and ending a workflow took 2.6–2.9 ms of CPU that way and
about 1.4 ms prepared, so at 5,000 events/s in batches of about 100 the
difference is several per cent of the hub's core.

:func:`use_prepared` gives DBOS's SQLite system database the same treatment
PostgreSQL gets: each of these statements is built and compiled by
SQLAlchemy once per set of columns, from DBOS's own expression, and then sent
to the driver as that SQL with its parameters run through the same type
processors, so what reaches SQLite is unchanged. The outcome's ``UPDATE`` and
output upsert stay two statements in one transaction, as DBOS runs them on
SQLite (it cannot put an ``UPDATE`` in a ``WITH`` clause).

It replaces two private methods of ``dbos._sys_db_sqlite.SQLiteSystemDatabase``,
so it is applied only to the DBOS versions it was written and tested against
(:data:`SUPPORTED`); with any other version DBOS is left as it is and the hub
runs as before, only slower. ``runtime.prepared_workflow_statements: false``
leaves DBOS alone too.
"""

from __future__ import annotations

import importlib.metadata
import threading
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
import structlog

log = structlog.get_logger(__name__)

#: DBOS versions (prefixes) whose SQLite system database this was checked against.
SUPPORTED = ("3.4.",)

#: The statements of a workflow's start and end, by DBOS's names for them
#: (and ours for the outcome's ``UPDATE``). Any other goes DBOS's own way.
HOT = frozenset(
    {
        "insert_workflow_status",
        "insert_workflow_input",
        "upsert_workflow_output",
        "accord_workflow_outcome",
        "accord_workflow_outcome_owned",
    }
)

_lock = threading.Lock()
_originals: dict[str, Any] = {}


def supported(version: str | None = None) -> bool:
    """Whether the installed DBOS (or ``version``) is one this was checked against."""
    if version is None:
        try:
            version = importlib.metadata.version("dbos")
        except importlib.metadata.PackageNotFoundError:  # pragma: no cover - a dependency
            return False
    return version.startswith(SUPPORTED)


def active() -> bool:
    """Whether DBOS's SQLite system database uses the prepared statements now."""
    return bool(_originals)


def use_prepared(enabled: bool = True) -> bool:
    """Switch the prepared statements on or off for this process; returns :func:`active`."""
    from dbos._sys_db_sqlite import SQLiteSystemDatabase

    with _lock:
        if enabled and not _originals:
            if not supported():
                log.info(
                    "DBOS version not checked: its SQLite statements are left as they are",
                    dbos=importlib.metadata.version("dbos"),
                )
                return False
            for name, method in _REPLACEMENTS.items():
                _originals[name] = SQLiteSystemDatabase.__dict__.get(name)
                setattr(SQLiteSystemDatabase, name, method)
        elif not enabled and _originals:
            for name, original in _originals.items():
                if original is None:
                    delattr(SQLiteSystemDatabase, name)
                else:  # pragma: no cover - DBOS 3.4 defines neither on the subclass
                    setattr(SQLiteSystemDatabase, name, original)
            _originals.clear()
        return bool(_originals)


class _Statement:
    """One compiled statement: its SQL, and how to turn named values into its parameters."""

    __slots__ = ("constants", "order", "processors", "sql")

    def __init__(self, compiled: Any, dialect: Any, names: set[str]) -> None:
        self.sql = str(compiled)
        self.order: tuple[str, ...] = tuple(compiled.positiontup)
        self.processors: dict[str, Callable[[Any], Any]] = {}
        # the statement's own constants (a status it compares with) are bind
        # parameters too; their values are fixed, so they are kept with the SQL
        self.constants: dict[str, Any] = {}
        for bind_name, bind in compiled.binds.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                self.processors[bind_name] = processor
            if bind_name not in names:
                self.constants[bind_name] = bind.value

    def parameters(self, values: dict[str, Any]) -> tuple[Any, ...]:
        merged = {**self.constants, **values} if self.constants else values
        processors = self.processors
        return tuple(
            processors[name](merged[name]) if name in processors else merged[name]
            for name in self.order
        )


def _compile(
    system_db: Any, values: dict[str, Any], build: Callable[[], Any], insert_columns: bool
) -> _Statement | None:
    from dbos._schemas import SCHEMA_PLACEHOLDER

    dialect = system_db.engine.dialect
    compiled = build().compile(
        dialect=dialect,
        column_keys=list(values) if insert_columns else None,
        schema_translate_map={SCHEMA_PLACEHOLDER: system_db.schema},
        render_schema_translate=True,
    )
    if not compiled.positional or "POSTCOMPILE" in str(compiled):
        return None  # parameters expanded per call: SQLAlchemy's way only
    return _Statement(compiled, dialect, set(values))


def _execute_prepared(
    self: Any,
    conn: Any,
    name: str,
    values: dict[str, Any],
    build: Callable[[], Any],
    *,
    insert_columns: bool = True,
) -> Any:
    """As DBOS's ``SystemDatabase._execute_prepared`` on PostgreSQL, for SQLite's
    positional parameters; statements not in :data:`HOT` go DBOS's way."""
    from sqlalchemy.orm import Session

    connection = conn.connection() if isinstance(conn, Session) else conn
    if name not in HOT or connection.dialect is not self.engine.dialect:
        return conn.execute(build(), values)
    cache: dict[tuple[str, tuple[str, ...]], _Statement | None] = self.__dict__.setdefault(
        "_accord_statements", {}
    )
    key = (name, tuple(values))
    if key not in cache:
        cache[key] = _compile(self, values, build, insert_columns)
    statement = cache[key]
    if statement is None:
        return conn.execute(build(), values)
    return connection.exec_driver_sql(statement.sql, statement.parameters(values))


def _update_workflow_outcome_in_transaction(
    self: Any,
    workflow_id: str,
    status: Any,
    *,
    output: str | None,
    error: str | None,
    owner_xid: str | None,
) -> bool:
    """DBOS 3.4's ``_update_workflow_outcome_in_transaction`` with its ``UPDATE``
    prepared: the same two statements in one transaction, the same result."""
    from dbos._sys_db import WorkflowStatusString

    keys = self._wf_values(workflow_id)
    values: dict[str, Any] = {
        **{f"key_{column}": value for column, value in keys.items()},
        "wf_id": workflow_id,
        "new_status": status,
    }
    if owner_xid is not None:
        values["owner"] = owner_xid

    def build_update() -> Any:
        ws = self.tables.workflow_status
        now_ms = self._now_ms_sql()
        update = (
            sa.update(ws)
            .values(
                status=sa.bindparam("new_status", type_=ws.c.status.type),
                # as the workflow is complete, its deduplication id goes
                deduplication_id=None,
                # a finished workflow has no owner
                owner_xid=None,
                updated_at=now_ms,
                completed_at=now_ms,
            )
            .where(*[ws.c[column] == sa.bindparam(f"key_{column}") for column in keys])
            .where(ws.c.workflow_uuid == sa.bindparam("wf_id", type_=ws.c.workflow_uuid.type))
            .where(ws.c.status == WorkflowStatusString.PENDING.value)
        )
        if owner_xid is not None:
            update = update.where(
                ws.c.owner_xid == sa.bindparam("owner", type_=ws.c.owner_xid.type)
            )
        return update

    def build_output_upsert() -> Any:
        insert = self.dialect.insert(self.tables.workflow_output)
        # excluded is the row this INSERT proposed, so these are the values below
        return insert.on_conflict_do_update(
            index_elements=self._key_conflict("workflow_uuid"),
            set_={"output": insert.excluded.output, "error": insert.excluded.error},
        )

    name = "accord_workflow_outcome" + ("" if owner_xid is None else "_owned")
    with self.engine.begin() as c:
        result = self._execute_prepared(c, name, values, build_update, insert_columns=False)
        if result.rowcount == 0:
            # the outcome was not ours to write, so no orphan output is left
            return False
        output_values = dict(**keys, workflow_uuid=workflow_id, output=output, error=error)
        self._execute_prepared(c, "upsert_workflow_output", output_values, build_output_upsert)
        return True


_REPLACEMENTS: dict[str, Any] = {
    "_execute_prepared": _execute_prepared,
    "_update_workflow_outcome_in_transaction": _update_workflow_outcome_in_transaction,
}
