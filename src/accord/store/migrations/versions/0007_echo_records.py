"""The echo memory in one row per record instead of one row per field.

Each field of each record in each system was a row with a four-column key and
a second index, the largest share of what a batch wrote. The same state is now
one JSON object per record, ``{"system": {"field": [pending_echo, last_seen]}}``;
existing rows are carried over.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD = sa.table(
    "echo_state",
    sa.column("system", sa.String()),
    sa.column("entity_type", sa.String()),
    sa.column("entity_id", sa.String()),
    sa.column("field", sa.String()),
    sa.column("pending_echo", sa.String()),
    sa.column("last_seen", sa.String()),
)


def upgrade() -> None:
    new = op.create_table(
        "echo_records",
        sa.Column("entity_type", sa.String(), nullable=False),
        sa.Column("entity_id", sa.String(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("entity_type", "entity_id", name=op.f("pk_echo_records")),
    )
    connection = op.get_bind()
    grouped: dict[tuple[str, str], dict[str, dict[str, list[str | None]]]] = {}
    for row in connection.execute(sa.select(_OLD)):
        if row.pending_echo is None and row.last_seen is None:
            continue
        systems = grouped.setdefault((row.entity_type, row.entity_id), {})
        systems.setdefault(row.system, {})[row.field] = [row.pending_echo, row.last_seen]
    rows: list[dict[str, Any]] = [
        {"entity_type": entity_type, "entity_id": entity_id, "state": state}
        for (entity_type, entity_id), state in sorted(grouped.items())
    ]
    if rows:
        op.bulk_insert(new, rows)
    op.drop_index("ix_echo_state_entity_type_entity_id", table_name="echo_state")
    op.drop_table("echo_state")


def downgrade() -> None:
    old = op.create_table(
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
    op.create_index(
        "ix_echo_state_entity_type_entity_id", "echo_state", ["entity_type", "entity_id"]
    )
    connection = op.get_bind()
    table = sa.table(
        "echo_records",
        sa.column("entity_type", sa.String()),
        sa.column("entity_id", sa.String()),
        sa.column("state", sa.JSON()),
    )
    rows = []
    for row in connection.execute(sa.select(table)):
        state = row.state if isinstance(row.state, dict) else json.loads(row.state)
        for system, fields in state.items():
            for field, (pending, seen) in fields.items():
                rows.append(
                    {
                        "system": system,
                        "entity_type": row.entity_type,
                        "entity_id": row.entity_id,
                        "field": field,
                        "pending_echo": pending,
                        "last_seen": seen,
                    }
                )
    if rows:
        op.bulk_insert(old, rows)
    op.drop_table("echo_records")
