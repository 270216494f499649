"""Quota governor: usage per vendor, window and bucket; per-vendor state.

Revision ID: 0003
Revises: 0002
Create Date: 2025-12-01

A frozen snapshot like the revisions before it: types and constraint names are
spelled out here, not imported from ``accord.store.quota_tables``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "quota_usage",
        sa.Column("vendor", sa.String(), nullable=False),
        sa.Column("window", sa.String(), nullable=False),
        sa.Column("window_start", _utc(), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("vendor", "window", "window_start", name=op.f("pk_quota_usage")),
        sa.CheckConstraint(
            "\"window\" IN ('second', 'minute', 'day')", name=op.f("ck_quota_usage_window")
        ),
        sa.CheckConstraint("used >= 0", name=op.f("ck_quota_usage_used_not_negative")),
    )
    op.create_table(
        "quota_state",
        sa.Column("vendor", sa.String(), nullable=False),
        sa.Column("paused_until", _utc(), nullable=True),
        sa.Column("inflight", sa.Integer(), nullable=False),
        sa.Column("leases", sa.JSON(), nullable=False),
        sa.Column("breaker", sa.String(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("opened_at", _utc(), nullable=True),
        sa.Column("waiters", sa.JSON(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("vendor", name=op.f("pk_quota_state")),
        sa.CheckConstraint(
            "\"breaker\" IN ('closed', 'open', 'half_open')", name=op.f("ck_quota_state_breaker")
        ),
        sa.CheckConstraint("inflight >= 0", name=op.f("ck_quota_state_inflight_not_negative")),
        sa.CheckConstraint("failures >= 0", name=op.f("ck_quota_state_failures_not_negative")),
    )


def downgrade() -> None:
    op.drop_table("quota_state")
    op.drop_table("quota_usage")
