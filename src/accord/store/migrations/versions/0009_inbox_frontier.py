"""SQLite: events never claimed are found by their seq, not by the status index.

Each intake commit wrote three pages: the event's row, its (system, event id)
key and its entry in the (status, seq) index. On SQLite the status index now
holds only events that have been claimed and wait again (a lease, a retry); an
event that has never been claimed is found above ``inbox_frontier``, the seq
every event up to which has been claimed. A claim takes the oldest events and
SQLite numbers a new event above every stored one, so those events always lie
above the frontier, and each claim moves the frontier to the highest seq it
took.

The frontier starts just below the oldest event never claimed (or at the
newest event, if every one has been). PostgreSQL keeps its full status index:
its intakes may commit a lower seq after a higher one, so a frontier could pass
an event not yet visible. It gets the table, unused, so that both schemas match.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Claimed before and waiting again: the events the SQLite status index holds.
WAITING_AGAIN = "status IN ('pending', 'failed') AND available_at IS NOT NULL"

#: Just below the oldest event never claimed; else the newest event; else 0.
START = (
    "SELECT coalesce("
    "(SELECT min(seq) FROM inbox WHERE status = 'pending' AND available_at IS NULL) - 1,"
    " (SELECT max(seq) FROM inbox), 0)"
)


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    frontier = op.create_table(
        "inbox_frontier",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column(
            "claimed_through",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox_frontier")),
        sa.CheckConstraint("id = 1", name=op.f("ck_inbox_frontier_single_row")),
    )
    start = op.get_bind().execute(sa.text(START)).scalar_one()
    op.bulk_insert(frontier, [{"id": 1, "claimed_through": int(start)}])
    if _sqlite():
        op.drop_index("ix_inbox_status_seq", table_name="inbox")
        op.create_index(
            "ix_inbox_status_seq",
            "inbox",
            ["status", "seq"],
            sqlite_where=sa.text(WAITING_AGAIN),
        )


def downgrade() -> None:
    if _sqlite():
        op.drop_index("ix_inbox_status_seq", table_name="inbox")
        op.create_index("ix_inbox_status_seq", "inbox", ["status", "seq"])
    op.drop_table("inbox_frontier")
