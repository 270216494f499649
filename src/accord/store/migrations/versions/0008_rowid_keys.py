"""SQLite: inbox numbers without AUTOINCREMENT, audit entries keyed by the rowid.

With AUTOINCREMENT, SQLite keeps the highest inbox ``seq`` ever used in a
table of its own and writes it on every insert: one more page in each intake
commit. Without it, SQLite gives a new row the highest ``seq`` in the table
plus one, which is the same number as long as the newest row is never
deleted. A trigger sees to that (deleting the newest event is refused), so a
``seq``, and with it a batch's workflow id, still never names two events. Should
the newest events have been deleted before this migration, a done marker event
(system ``_accord``) takes the highest number AUTOINCREMENT had given.

The audit log's ``BIGINT`` key was an index of its own beside the table on
SQLite; as ``INTEGER`` it is the rowid, one b-tree less per entry.

PostgreSQL keeps its schema: its sequences never hand out a number twice, and
its primary keys are indexes of their own whatever their type.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Refuses to delete the newest inbox event, so that its ``seq`` is never reused.
KEEP_NEWEST = """
CREATE TRIGGER inbox_keeps_newest BEFORE DELETE ON inbox
WHEN old.seq = (SELECT max(seq) FROM inbox)
BEGIN
    SELECT RAISE(ABORT, 'the newest inbox event is kept: its seq must never be reused');
END
"""


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    if not _sqlite():
        return
    _keep_high_water()
    with op.batch_alter_table(
        "inbox", recreate="always", table_kwargs={"sqlite_autoincrement": False}
    ) as batch:
        # AUTOINCREMENT had to be written inline, where the key cannot be named
        batch.create_primary_key("pk_inbox", ["seq"])
    op.execute(KEEP_NEWEST)
    with op.batch_alter_table("audit_log", recreate="always") as batch:
        batch.alter_column(
            "seq", type_=sa.Integer(), existing_type=sa.BigInteger(), existing_nullable=False
        )


def _keep_high_water() -> None:
    """If the newest events were ever deleted, AUTOINCREMENT still remembers the
    highest number it gave; without it SQLite would give those numbers again.
    A done marker event with that number carries it over (and the trigger then
    keeps it)."""
    bind = op.get_bind()
    remembered = bind.exec_driver_sql(
        "SELECT seq FROM sqlite_sequence WHERE name = 'inbox'"
    ).scalar()
    highest = bind.exec_driver_sql("SELECT max(seq) FROM inbox").scalar()
    if remembered is None or (highest is not None and highest >= remembered):
        return
    bind.exec_driver_sql(
        "INSERT INTO inbox (seq, system, event_id, received_at, event_type, payload, status,"
        " attempts, processed_at) VALUES (?, '_accord', 'inbox-high-water', ?, 'marker', '{}',"
        " 'done', 0, ?)",
        (remembered, _now(), _now()),
    )


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def downgrade() -> None:
    if not _sqlite():
        return
    op.execute("DROP TRIGGER IF EXISTS inbox_keeps_newest")
    # AUTOINCREMENT is written inline with the key, so the table is built anew
    op.create_table(
        "_inbox_autoincrement",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("system", sa.String(), nullable=False),
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("event_type", sa.String(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("processed_at", sa.DateTime(), nullable=True),
        sa.Column("available_at", sa.DateTime(), nullable=True),
        sa.Column("trace_id", sa.String(), nullable=True),
        sa.Column("outcome", sa.JSON(none_as_null=True), nullable=True),
        sa.UniqueConstraint("system", "event_id", name="uq_inbox_system_event_id"),
        sa.CheckConstraint(
            "status IN ('pending', 'done', 'failed', 'dead')", name="ck_inbox_status"
        ),
        sa.CheckConstraint("attempts >= 0", name="ck_inbox_attempts_not_negative"),
        sqlite_autoincrement=True,
    )
    columns = (
        "seq, system, event_id, received_at, event_type, payload, status, attempts,"
        " error, processed_at, available_at, trace_id, outcome"
    )
    op.execute(f"INSERT INTO _inbox_autoincrement ({columns}) SELECT {columns} FROM inbox")
    op.drop_index("ix_inbox_status_seq", table_name="inbox")
    op.drop_table("inbox")
    op.rename_table("_inbox_autoincrement", "inbox")
    op.create_index("ix_inbox_status_seq", "inbox", ["status", "seq"])
    with op.batch_alter_table("audit_log", recreate="always") as batch:
        batch.alter_column(
            "seq", type_=sa.BigInteger(), existing_type=sa.Integer(), existing_nullable=False
        )
