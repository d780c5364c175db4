"""Instance locks as leases in Fleet's database.

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-30 19:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "instance_lock",
        sa.Column("instance", sa.String(length=63), nullable=False),
        sa.Column("run", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("instance"),
    )
    op.create_index("ix_instance_lock_run", "instance_lock", ["run"])


def downgrade() -> None:
    op.drop_index("ix_instance_lock_run", table_name="instance_lock")
    op.drop_table("instance_lock")
