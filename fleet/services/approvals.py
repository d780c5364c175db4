"""Approvals inside a rollout run: what has been given, refusals, expiry.

Approvals are Fleet's records (the Prefect run input is only the way they
arrive). Recording is idempotent per run, instance, approver and decision,
so a run that re-executes from the top (a suspended run resumes that way)
replays its inputs without recording anything twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Engine, select

from fleet.db.audit import Entry
from fleet.db.history import APPROVAL
from fleet.db.models import AuditEventRow, table_of
from fleet.services import audit, deployments
from fleet.services._common import reading

__all__ = ["given", "record_once", "record_refusal"]

_AUDIT = table_of(AuditEventRow)


def given(flow_run_id: str, *, engine: Engine | None = None) -> list[deployments.Approval]:
    """Every approval and rejection recorded for this run, oldest first."""
    with reading(engine) as session:
        rows = session.execute(
            select(APPROVAL).where(APPROVAL.c.flow_run_id == flow_run_id).order_by(APPROVAL.c.id)
        ).all()
    return [
        deployments.Approval(
            r.instance,
            r.approver,
            r.decision,
            r.comment,
            r.at,
            r.verified,
            r.flow_run_id,
            r.manifest_number,
        )
        for r in rows
    ]


def record_once(
    instance: str,
    *,
    approver: str,
    decision: str,
    comment: str,
    flow_run_id: str,
    manifest_number: int,
    now: datetime | None = None,
    engine: Engine | None = None,
) -> deployments.Approval:
    """Record a self-declared approval unless this approver already decided the same
    for this run and instance (e.g. a verified one the API recorded before resuming)."""
    for existing in given(flow_run_id, engine=engine):
        if (
            existing.instance == instance
            and existing.approver == approver
            and existing.decision == decision
        ):
            return existing
    return deployments.record_approval(
        instance,
        approver=approver,
        decision=decision,
        comment=comment,
        verified=False,
        flow_run_id=flow_run_id,
        manifest_number=manifest_number,
        now=now,
        engine=engine,
    )


def record_refusal(
    instances: Sequence[str],
    *,
    approver: str,
    reason: str,
    key: str,
    flow_run_id: str,
    engine: Engine | None = None,
) -> bool:
    """Record that an input was refused (e.g. four eyes); once per run and input key."""
    with reading(engine) as session:
        seen = session.execute(
            select(_AUDIT.c.details).where(
                (_AUDIT.c.flow_run_id == flow_run_id) & (_AUDIT.c.action == "approval.refused")
            )
        ).scalars()
        for details in seen:
            text = details if isinstance(details, str) else str(details)
            if f'"key":"{key}"' in text:
                return False
    audit.append(
        [
            Entry(
                "approval.refused",
                f"instance:{name}",
                {"approver": approver, "reason": reason, "key": key},
            )
            for name in instances
        ],
        actor=approver,
        flow_run_id=flow_run_id,
        engine=engine,
    )
    return True
