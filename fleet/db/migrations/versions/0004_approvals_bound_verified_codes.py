"""Approvals bound to a revision's hash, verified-only channels, approval requests
and one-time approval codes.

Revision ID: 0004_approvals
Revises: 0003
Create Date: 2026-11-30 19:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_approvals"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("channel", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("verified_approvals", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("approval", schema=None) as batch_op:
        batch_op.add_column(sa.Column("manifest_hash", sa.String(length=64), nullable=True))

    op.create_table(
        "approval_request",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("flow_run_id", sa.String(length=64), nullable=False),
        sa.Column("instance", sa.String(length=63), nullable=False),
        sa.Column("manifest_number", sa.Integer(), nullable=False),
        sa.Column("manifest_hash", sa.String(length=64), nullable=False),
        sa.Column("approvals_required", sa.Integer(), nullable=False),
        sa.Column("verified_only", sa.Boolean(), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("flow_run_id", "instance"),
    )
    with op.batch_alter_table("approval_request", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_approval_request_flow_run_id"), ["flow_run_id"], unique=False
        )

    op.create_table(
        "approval_code",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("flow_run_id", sa.String(length=64), nullable=False),
        sa.Column("principal", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("used_flow_run_id", sa.String(length=64), nullable=True),
        sa.Column("used_key", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code_hash"),
    )
    with op.batch_alter_table("approval_code", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_approval_code_flow_run_id"), ["flow_run_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("approval_code", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_approval_code_flow_run_id"))
    op.drop_table("approval_code")
    with op.batch_alter_table("approval_request", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_approval_request_flow_run_id"))
    op.drop_table("approval_request")
    with op.batch_alter_table("approval", schema=None) as batch_op:
        batch_op.drop_column("manifest_hash")
    with op.batch_alter_table("channel", schema=None) as batch_op:
        batch_op.drop_column("verified_approvals")
