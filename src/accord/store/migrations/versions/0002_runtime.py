"""Runtime columns: inbox outcome, effect request, echo memory.

Revision ID: 0002
Revises: 0001
Create Date: 2025-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inbox") as batch:
        batch.add_column(sa.Column("outcome", sa.JSON(none_as_null=True), nullable=True))
    with op.batch_alter_table("effects") as batch:
        batch.add_column(sa.Column("request", sa.JSON(none_as_null=True), nullable=True))
    op.create_table(
        "echo_state",
        sa.Column("system", sa.String(), nullable=False),
        sa.Column("entity_type", sa.String(), nullable=False),
        sa.Column("entity_id", sa.String(), nullable=False),
        sa.Column("field", sa.String(), nullable=False),
        sa.Column("pending_echo", sa.String(64), nullable=True),
        sa.Column("last_seen", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint(
            "system", "entity_type", "entity_id", "field", name="pk_echo_state"
        ),
    )


def downgrade() -> None:
    op.drop_table("echo_state")
    with op.batch_alter_table("effects") as batch:
        batch.drop_column("request")
    with op.batch_alter_table("inbox") as batch:
        batch.drop_column("outcome")
