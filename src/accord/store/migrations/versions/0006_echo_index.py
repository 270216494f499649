"""An index on the echo memory by record, so a batch loads it without a table scan.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_echo_state_entity_type_entity_id", "echo_state", ["entity_type", "entity_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_echo_state_entity_type_entity_id", table_name="echo_state")
