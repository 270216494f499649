"""Reconciliation runs and their discrepancies.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29

A frozen snapshot like the revisions before it: types and constraint names are
spelled out here, not imported from the table modules.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "reconcile_runs",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("pair", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("started_at", _utc(), nullable=False),
        sa.Column("finished_at", _utc(), nullable=True),
        sa.Column("left_name", sa.String(), nullable=False),
        sa.Column("right_name", sa.String(), nullable=False),
        sa.Column("left_rows", sa.BigInteger(), nullable=False),
        sa.Column("right_rows", sa.BigInteger(), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("totals", sa.JSON(), nullable=False),
        sa.Column("trace_id", sa.String(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconcile_runs")),
        sa.CheckConstraint(
            "\"state\" IN ('running', 'finished', 'failed')",
            name=op.f("ck_reconcile_runs_state"),
        ),
        sa.CheckConstraint(
            "left_rows >= 0 AND right_rows >= 0",
            name=op.f("ck_reconcile_runs_rows_not_negative"),
        ),
    )
    op.create_index(
        op.f("ix_reconcile_runs_pair_started_at"), "reconcile_runs", ["pair", "started_at"]
    )
    op.create_table(
        "reconcile_discrepancies",
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("class", sa.String(), nullable=False),
        sa.Column("field", sa.String(), nullable=True),
        sa.Column("left", sa.JSON(), nullable=False),
        sa.Column("right", sa.JSON(), nullable=False),
        sa.Column("owner", sa.String(), nullable=True),
        sa.Column("fix", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("effect_key", sa.String(), nullable=True),
        sa.Column("exception_id", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("run_id", "seq", name=op.f("pk_reconcile_discrepancies")),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["reconcile_runs.id"],
            name=op.f("fk_reconcile_discrepancies_run_id_reconcile_runs"),
        ),
        sa.CheckConstraint(
            "\"class\" IN ('missing', 'orphan', 'field_mismatch', 'amount_mismatch', "
            "'status_mismatch')",
            name=op.f("ck_reconcile_discrepancies_class"),
        ),
        sa.CheckConstraint(
            "\"state\" IN ('open', 'healed', 'exception')",
            name=op.f("ck_reconcile_discrepancies_state"),
        ),
    )
    op.create_index(
        op.f("ix_reconcile_discrepancies_run_id_class"),
        "reconcile_discrepancies",
        ["run_id", "class"],
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_reconcile_discrepancies_run_id_class"), table_name="reconcile_discrepancies"
    )
    op.drop_table("reconcile_discrepancies")
    op.drop_index(op.f("ix_reconcile_runs_pair_started_at"), table_name="reconcile_runs")
    op.drop_table("reconcile_runs")
