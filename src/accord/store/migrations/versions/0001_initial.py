"""The initial store: records, versions, xref, inbox, effects, exceptions, audit, cursors.

Revision ID: 0001
Revises:
Create Date: 2025-11-29

A migration is a frozen snapshot: it spells out its types and constraint names
instead of importing ``accord.store.tables``, so that later edits of the tables
cannot change what this revision did. A test compares the migrated database
with the tables on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS_HASH = "0" * 64


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "records",
        sa.Column("entity_type", sa.String(), nullable=False),
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("updated_by_system", sa.String(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("entity_type", "id", name=op.f("pk_records")),
        sa.CheckConstraint("version >= 1", name=op.f("ck_records_version_positive")),
    )
    op.create_table(
        "record_versions",
        sa.Column("entity_type", sa.String(), nullable=False),
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("changed_fields", sa.JSON(), nullable=False),
        sa.Column("system", sa.String(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("trace_id", sa.String(), nullable=True),
        sa.Column("at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("entity_type", "id", "version", name=op.f("pk_record_versions")),
        sa.ForeignKeyConstraint(
            ["entity_type", "id"],
            ["records.entity_type", "records.id"],
            name=op.f("fk_record_versions_entity_type_id_records"),
        ),
        sa.CheckConstraint("version >= 1", name=op.f("ck_record_versions_version_positive")),
    )
    op.create_table(
        "xref",
        sa.Column("entity_type", sa.String(), nullable=False),
        sa.Column("canonical_id", sa.String(), nullable=False),
        sa.Column("system", sa.String(), nullable=False),
        sa.Column("external_object", sa.String(), nullable=False),
        sa.Column("external_id", sa.String(), nullable=False),
        sa.Column("etag", sa.String(), nullable=True),
        sa.Column("last_synced", _utc(), nullable=True),
        sa.Column("last_written_digest", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("entity_type", "canonical_id", "system", name=op.f("pk_xref")),
        sa.UniqueConstraint(
            "system",
            "external_object",
            "external_id",
            name=op.f("uq_xref_system_external_object_external_id"),
        ),
    )
    op.create_table(
        "inbox",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("system", sa.String(), nullable=False),
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("received_at", _utc(), nullable=False),
        sa.Column("event_type", sa.String(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("processed_at", _utc(), nullable=True),
        sa.Column("available_at", _utc(), nullable=True),
        sa.Column("trace_id", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_inbox")),
        sa.UniqueConstraint("system", "event_id", name=op.f("uq_inbox_system_event_id")),
        sa.CheckConstraint(
            "status IN ('pending', 'done', 'failed', 'dead')", name=op.f("ck_inbox_status")
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_inbox_attempts_not_negative")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_inbox_status_seq"), "inbox", ["status", "seq"])
    op.create_table(
        "effects",
        sa.Column("idempotency_key", sa.String(), nullable=False),
        sa.Column("system", sa.String(), nullable=False),
        sa.Column("operation", sa.String(), nullable=False),
        sa.Column("request_digest", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("external_id", sa.String(), nullable=True),
        sa.Column("result", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.Column("trace_id", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("idempotency_key", name=op.f("pk_effects")),
        sa.CheckConstraint(
            "status IN ('intent', 'done', 'failed', 'doubt')", name=op.f("ck_effects_status")
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_effects_attempts_not_negative")),
    )
    op.create_index(op.f("ix_effects_status"), "effects", ["status"])
    op.create_table(
        "exceptions",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("context", sa.JSON(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("assignee", sa.String(), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.Column("trace_id", sa.String(), nullable=True),
        sa.Column("dedupe_key", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exceptions")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_exceptions_dedupe_key")),
        sa.CheckConstraint(
            "state IN ('open', 'assigned', 'resolved', 'ignored')",
            name=op.f("ck_exceptions_state"),
        ),
    )
    op.create_index(op.f("ix_exceptions_role_state"), "exceptions", ["role", "state"])
    op.create_index(op.f("ix_exceptions_state_created_at"), "exceptions", ["state", "created_at"])
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", _utc(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_log")),
    )
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("head_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
        sa.CheckConstraint("id = 1", name=op.f("ck_audit_head_single_row")),
        sa.CheckConstraint("count >= 0", name=op.f("ck_audit_head_count_not_negative")),
    )
    op.bulk_insert(head, [{"id": 1, "count": 0, "head_hash": GENESIS_HASH}])
    op.create_table(
        "cursors",
        sa.Column("system", sa.String(), nullable=False),
        sa.Column("stream", sa.String(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("system", "stream", name=op.f("pk_cursors")),
    )


def downgrade() -> None:
    op.drop_table("cursors")
    op.drop_table("audit_head")
    op.drop_table("audit_log")
    op.drop_index(op.f("ix_exceptions_state_created_at"), table_name="exceptions")
    op.drop_index(op.f("ix_exceptions_role_state"), table_name="exceptions")
    op.drop_table("exceptions")
    op.drop_index(op.f("ix_effects_status"), table_name="effects")
    op.drop_table("effects")
    op.drop_index(op.f("ix_inbox_status_seq"), table_name="inbox")
    op.drop_table("inbox")
    op.drop_table("xref")
    op.drop_table("record_versions")
    op.drop_table("records")
