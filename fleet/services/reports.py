"""`fleet audit report`: what ran on an instance at a moment, from Fleet's records alone.

The rules are `fleet.core.report` (which events a report rests on, which
advisories stood open) and `fleet.core.rollback.running_at` (which revision
ran); this module reads the rows they need in one read transaction. Prefect
is only linked to (run ids and UI links), never asked: the report answers
the same after Prefect's retention has dropped its copy.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from sqlalchemy import Engine, func, select

from fleet.core.audit import AuditEvent, verify_chain
from fleet.core.durations import require_aware
from fleet.core.errors import NotFoundError
from fleet.core.report import (
    AuditReport,
    ReportApproval,
    ReportRevision,
    ReportRun,
    advisories_at,
    rests_on,
    run_link,
)
from fleet.core.rollback import running_at
from fleet.db import fleet as fleet_repo
from fleet.db.audit import iter_events
from fleet.db.history import APPROVAL, APPROVAL_REQUEST, DEPLOYMENT, manifest_rows, revision_of
from fleet.db.models import AuditEventRow, table_of
from fleet.services._common import reading

__all__ = ["audit_report", "prefect_ui_url"]

_AUDIT = table_of(AuditEventRow)


def prefect_ui_url() -> str | None:
    """The Prefect UI's base URL (Prefect's own setting), for links to runs."""
    from prefect.settings import get_current_settings

    url = get_current_settings().ui_url
    return str(url).rstrip("/") if url else None


def _picking(
    events: Iterator[AuditEvent], instance: str, into: list[AuditEvent]
) -> Iterator[AuditEvent]:
    subject, risk = f"instance:{instance}", f"risk:{instance}/"
    for event in events:
        if event.subject == subject or event.subject.startswith(risk):
            into.append(event)
        yield event


def audit_report(
    instance: str,
    *,
    at: datetime,
    prefect_ui: str | None = None,
    engine: Engine | None = None,
) -> AuditReport:
    """The audit report of `instance` at `at` (see `fleet.core.report`).

    Raises `NotFoundError` naming an unknown instance.
    """
    require_aware(at, what="report time")
    with reading(engine) as session:
        known = session.execute(
            select(fleet_repo.INSTANCE.c.id).where(fleet_repo.INSTANCE.c.name == instance)
        ).first()
        if known is None:
            raise NotFoundError(f"Unknown instance: {instance!r}")
        rows = manifest_rows(session, instance=instance)
        running = running_at([revision_of(r) for r in rows], at)
        if running is None:
            return AuditReport(instance, at, None)
        row = next(r for r in rows if r.number == running.number)
        revision = ReportRevision(
            number=row.number,
            hash=row.hash,
            components=dict(row.components),
            status=row.status,
            decision=row.decision,
            created_at=row.created_at,
            created_by=row.created_by,
            deployed_at=row.deployed_at,
            parent=row.parent,
            rollback_of=row.rollback_of,
        )
        records = session.execute(
            select(DEPLOYMENT)
            .where(
                (DEPLOYMENT.c.instance == instance)
                & (DEPLOYMENT.c.manifest_number == row.number)
                & (DEPLOYMENT.c.started_at <= at)
            )
            .order_by(DEPLOYMENT.c.id)
        ).all()
        succeeded = [r for r in records if r.outcome == "succeeded"]
        deploy = succeeded[-1] if succeeded else None
        approvals = session.execute(
            select(APPROVAL)
            .where(
                (APPROVAL.c.instance == instance)
                & (APPROVAL.c.manifest_number == row.number)
                & (APPROVAL.c.at <= at)
            )
            .order_by(APPROVAL.c.id)
        ).all()
        required = None
        if deploy is not None:
            required = session.execute(
                select(APPROVAL_REQUEST.c.approvals_required).where(
                    (APPROVAL_REQUEST.c.flow_run_id == deploy.flow_run_id)
                    & (APPROVAL_REQUEST.c.instance == instance)
                )
            ).scalar()
        advisories = [
            fleet_repo.advisory_of(r) for r in session.execute(select(fleet_repo.ADVISORY))
        ]
        risks = [
            fleet_repo.risk_of(r)
            for r in session.execute(
                select(fleet_repo.RISK).where(fleet_repo.RISK.c.instance == instance)
            )
        ]
        deadlines = fleet_repo.load_deadlines(session)
        risk_subject = f"risk:{instance}/"
        top = session.execute(
            select(func.max(_AUDIT.c.seq)).where(
                (
                    (_AUDIT.c.subject == f"instance:{instance}")
                    | _AUDIT.c.subject.startswith(risk_subject, autoescape=True)
                )
                & (_AUDIT.c.at <= at)
            )
        ).scalar()
        # One pass over the chain up to the newest event about the instance: it is
        # verified and the events about the instance are picked on the way.
        about: list[AuditEvent] = []
        chain = None
        if top is not None:
            stream = _picking(iter_events(session, upto_seq=top), instance, about)
            chain = verify_chain(stream)
            for _ in stream:  # past a broken link: still pick what the report cites
                pass
        risk_events = list(iter_events(session, subject=f"{risk_subject}*"))
        runs = {r for r in (row.flow_run_id, deploy and deploy.flow_run_id) if r}
        events = rests_on(about, instance=instance, revision=row.number, runs=runs, at=at)
        if not events:
            chain = None
    granted: dict[str, datetime] = {}
    for event in risk_events:
        granted[event.subject] = min(event.at, granted.get(event.subject, event.at))
    findings = advisories_at(
        instance,
        revision.components,
        advisories,
        [(ra, granted.get(f"risk:{instance}/{ra.advisory}")) for ra in risks],
        at=at,
        deadlines=deadlines,
    )
    planned = (
        None
        if row.flow_run_id is None
        else ReportRun(
            "planned",
            row.flow_run_id,
            run_link(prefect_ui, row.flow_run_id),
            started_by=row.created_by,
            started_at=row.created_at,
        )
    )
    deployed = (
        None
        if deploy is None
        else ReportRun(
            "deployed",
            deploy.flow_run_id,
            run_link(prefect_ui, deploy.flow_run_id),
            started_by=deploy.started_by,
            started_at=deploy.started_at,
            finished_at=deploy.finished_at,
            outcome=deploy.outcome,
        )
    )
    return AuditReport(
        instance,
        at,
        revision,
        planned,
        deployed,
        tuple(
            ReportApproval(
                a.approver,
                a.decision,
                a.verified,
                a.at,
                a.comment,
                a.flow_run_id,
                a.manifest_number,
                a.manifest_hash,
            )
            for a in approvals
        ),
        required,
        findings,
        events,
        chain,
    )
