"""Reconciliation's two tables, on the store's ``metadata``.

Like :mod:`accord.store.quota_tables`, they live beside
:mod:`accord.store.tables` so that reconciliation could be added without
touching it; importing this module (``accord.store`` does) registers them on
the same ``metadata``. Migration ``0004`` creates them.

* ``reconcile_runs`` is one row per run of one pair (or one pair of files):
  when it ran, how many records each side had, the count per class and the
  money totals that disagreed.
* ``reconcile_discrepancies`` holds each difference found, with both values,
  the owning system, the proposed fix and what became of it (healed by an
  effect, handed to a person as an exception, or still open).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKeyConstraint,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from accord.store.tables import UTCDateTime, metadata

__all__ = [
    "DISCREPANCY_CLASSES",
    "DISCREPANCY_STATES",
    "RUN_STATES",
    "reconcile_discrepancies",
    "reconcile_runs",
]

#: The classes of drift, as stored in ``reconcile_discrepancies.class``.
DISCREPANCY_CLASSES = ("missing", "orphan", "field_mismatch", "amount_mismatch", "status_mismatch")
#: What became of a discrepancy: ``open`` (found, not acted on), ``healed`` (an
#: effect wrote the owner's value), ``exception`` (queued for the owning role).
DISCREPANCY_STATES = ("open", "healed", "exception")
#: A run is ``running`` until it ``finished`` or ``failed`` (with its error).
RUN_STATES = ("running", "finished", "failed")


def _one_of(column: str, values: tuple[str, ...], name: str) -> CheckConstraint:
    allowed = ", ".join(f"'{value}'" for value in values)
    return CheckConstraint(f'"{column}" IN ({allowed})', name=name)


#: One row per reconciliation run.
reconcile_runs = Table(
    "reconcile_runs",
    metadata,
    Column("id", String(), nullable=False),
    # The pair's name (``invoices``), or ``files`` for two exports.
    Column("pair", String(), nullable=False),
    Column("state", String(), nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime(), nullable=True),
    # The names of the two sides (systems or files).
    Column("left_name", String(), nullable=False),
    Column("right_name", String(), nullable=False),
    Column("left_rows", BigInteger(), nullable=False),
    Column("right_rows", BigInteger(), nullable=False),
    # {class: count}, every class present.
    Column("counts", JSON(), nullable=False),
    # {"group_by": [...], "agree": bool, "mismatches": [...]}; amounts as text.
    Column("totals", JSON(), nullable=False),
    Column("trace_id", String(), nullable=True),
    Column("error", Text(), nullable=True),
    PrimaryKeyConstraint("id"),
    _one_of("state", RUN_STATES, "state"),
    CheckConstraint("left_rows >= 0 AND right_rows >= 0", name="rows_not_negative"),
    Index(None, "pair", "started_at"),
)

#: Each discrepancy of a run, in the order the run reported them.
reconcile_discrepancies = Table(
    "reconcile_discrepancies",
    metadata,
    Column("run_id", String(), nullable=False),
    Column("seq", Integer(), nullable=False),
    Column("key", String(), nullable=False),
    Column("class", String(), nullable=False),
    Column("field", String(), nullable=True),
    # Both values as JSON documents ({"value": ...}); decimals as text.
    Column("left", JSON(), nullable=False),
    Column("right", JSON(), nullable=False),
    Column("owner", String(), nullable=True),
    # The proposed fix: {"action": ..., "target": ..., ...}.
    Column("fix", JSON(), nullable=False),
    Column("state", String(), nullable=False),
    # The effect that healed it, or the exception item it became.
    Column("effect_key", String(), nullable=True),
    Column("exception_id", String(), nullable=True),
    PrimaryKeyConstraint("run_id", "seq"),
    ForeignKeyConstraint(["run_id"], ["reconcile_runs.id"]),
    _one_of("class", DISCREPANCY_CLASSES, "class"),
    _one_of("state", DISCREPANCY_STATES, "state"),
    Index(None, "run_id", "class"),
)
