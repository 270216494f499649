"""The quota governor's two tables, on the store's ``metadata``.

They live beside :mod:`accord.store.tables` rather than in it only so that the
governor could be added without touching that module; importing this module
(``accord.store`` does) registers them on the same ``metadata``, so the schema
test and Alembic see them like any other table. Migration ``0003`` creates them.

* ``quota_usage`` counts the calls granted per vendor, window and bucket. Each
  window is *rolling* and counted in buckets (10 ms for the
  per-second window, 600 ms for the per-minute one, ten minutes for the
  24-hour one); ``window_start`` is the start of the bucket.
* ``quota_state`` is one row per vendor: the pause set by a ``Retry-After``, the
  concurrency slots held, the circuit breaker, and the callers waiting with
  their priority. Every change to a vendor's quota first updates this row, which
  is what serialises the governors of all processes on that vendor.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
)

from accord.store.tables import UTCDateTime, metadata

__all__ = ["BREAKER_STATES", "QUOTA_WINDOWS", "quota_state", "quota_usage"]

#: The windows a quota policy may set, as stored in ``quota_usage.window``.
QUOTA_WINDOWS = ("second", "minute", "day")
#: The states of a vendor's circuit breaker, as stored in ``quota_state.breaker``.
BREAKER_STATES = ("closed", "open", "half_open")


def _one_of(column: str, values: tuple[str, ...], name: str) -> CheckConstraint:
    allowed = ", ".join(f"'{value}'" for value in values)
    return CheckConstraint(f'"{column}" IN ({allowed})', name=name)


#: Calls granted per (vendor, window, bucket start).
quota_usage = Table(
    "quota_usage",
    metadata,
    Column("vendor", String(), nullable=False),
    Column("window", String(), nullable=False),
    Column("window_start", UTCDateTime(), nullable=False),
    Column("used", Integer(), nullable=False),
    PrimaryKeyConstraint("vendor", "window", "window_start"),
    _one_of("window", QUOTA_WINDOWS, "window"),
    CheckConstraint("used >= 0", name="used_not_negative"),
)

#: One row per vendor: pause, slots, breaker and waiters, shared by every worker.
quota_state = Table(
    "quota_state",
    metadata,
    Column("vendor", String(), nullable=False),
    # No call starts before this (the latest Retry-After); NULL when not paused.
    Column("paused_until", UTCDateTime(), nullable=True),
    # Concurrency slots held now; always the length of ``leases``.
    Column("inflight", Integer(), nullable=False),
    # The lease expiry (epoch seconds) of each slot held: a slot whose process
    # died is reclaimed when its lease runs out.
    Column("leases", JSON(), nullable=False),
    Column("breaker", String(), nullable=False),
    # Consecutive failures while closed.
    Column("failures", Integer(), nullable=False),
    # When the breaker opened (open), or when the half-open probe started.
    Column("opened_at", UTCDateTime(), nullable=True),
    # Callers waiting now: {waiter id: [priority, registration expiry (epoch s)]}.
    Column("waiters", JSON(), nullable=False),
    # Bumped by every change: the update that locks the row for the transaction.
    Column("version", BigInteger(), nullable=False),
    PrimaryKeyConstraint("vendor"),
    _one_of("breaker", BREAKER_STATES, "breaker"),
    CheckConstraint("inflight >= 0", name="inflight_not_negative"),
    CheckConstraint("failures >= 0", name="failures_not_negative"),
)
