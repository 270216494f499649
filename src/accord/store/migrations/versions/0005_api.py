"""API keys, idempotency keys and the exception-queue action history of the REST API.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29

A frozen snapshot like the revisions before it: types and constraint names are
spelled out here, not imported from the table modules.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("prefix", sa.String(), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("created_by", sa.String(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("revoked_at", _utc(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
        sa.CheckConstraint(
            "\"role\" IN ('admin', 'finance', 'pmo', 'sales_ops', 'auditor', 'integration')",
            name=op.f("ck_api_keys_role"),
        ),
    )
    op.create_table(
        "api_idempotency",
        sa.Column("principal", sa.String(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("request_digest", sa.String(64), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("headers", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("expires_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("principal", "key", name=op.f("pk_api_idempotency")),
        sa.CheckConstraint(
            "\"state\" IN ('running', 'done')", name=op.f("ck_api_idempotency_state")
        ),
    )
    op.create_index(op.f("ix_api_idempotency_expires_at"), "api_idempotency", ["expires_at"])
    op.create_table(
        "exception_actions",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("exception_id", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_exception_actions")),
        sa.CheckConstraint(
            "\"action\" IN ('assign', 'resolve', 'ignore', 'retry')",
            name=op.f("ck_exception_actions_action"),
        ),
    )
    op.create_index(
        op.f("ix_exception_actions_exception_id_seq"),
        "exception_actions",
        ["exception_id", "seq"],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_exception_actions_exception_id_seq"), table_name="exception_actions")
    op.drop_table("exception_actions")
    op.drop_index(op.f("ix_api_idempotency_expires_at"), table_name="api_idempotency")
    op.drop_table("api_idempotency")
    op.drop_table("api_keys")
