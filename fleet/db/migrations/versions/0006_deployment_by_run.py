"""Deployment records found by their flow run: one instance's deploy in a run of thousands.

Revision ID: 0006_deployment_by_run
Revises: console_sessions_drift
Create Date: 2026-11-30 21:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006_deployment_by_run"
down_revision: str | None = "console_sessions_drift"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deployment", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_deployment_flow_run_id"), ["flow_run_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("deployment", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deployment_flow_run_id"))
