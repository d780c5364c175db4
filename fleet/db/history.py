"""Manifest revisions, deployment records and approvals: rows to core values."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, bindparam, func, select

from fleet.core.manifests import Manifest, ManifestStatus, Revision
from fleet.db.models import (
    ApprovalCodeRow,
    ApprovalRequestRow,
    ApprovalRow,
    DeploymentRow,
    ManifestRow,
    table_of,
)

__all__ = [
    "APPROVAL",
    "APPROVAL_CODE",
    "APPROVAL_REQUEST",
    "DEPLOYMENT",
    "MANIFEST",
    "latest_revisions",
    "load_revisions",
    "manifest_rows",
    "revision_of",
]

MANIFEST = table_of(ManifestRow)
DEPLOYMENT = table_of(DeploymentRow)
APPROVAL = table_of(ApprovalRow)
APPROVAL_REQUEST = table_of(ApprovalRequestRow)
APPROVAL_CODE = table_of(ApprovalCodeRow)

# Reads every deploy makes, built once (building a statement costs more CPU
# than running it); parameters `instance` and `number`, or `instance` and `run`.
MANIFEST_AT = select(MANIFEST).where(
    (MANIFEST.c.instance == bindparam("instance")) & (MANIFEST.c.number == bindparam("number"))
)
DEPLOYMENT_OF_RUN = select(DEPLOYMENT).where(
    (DEPLOYMENT.c.instance == bindparam("instance"))
    & (DEPLOYMENT.c.flow_run_id == bindparam("run"))
)


def revision_of(row: Row[Any]) -> Revision:
    return Revision(
        number=row.number,
        manifest=Manifest.from_json(row.components),
        status=ManifestStatus(row.status),
        created_at=row.created_at,
        deployed_at=row.deployed_at,
        parent=row.parent,
        rollback_of=row.rollback_of,
        explanation=dict(row.explanation or {}),
    )


def manifest_rows(session: Connection, *, instance: str) -> list[Row[Any]]:
    """An instance's revisions, oldest first."""
    return list(
        session.execute(
            select(MANIFEST).where(MANIFEST.c.instance == instance).order_by(MANIFEST.c.number)
        ).all()
    )


def load_revisions(session: Connection, *, instance: str) -> list[Revision]:
    """An instance's history as the core's `Revision`s, oldest first."""
    return [revision_of(r) for r in manifest_rows(session, instance=instance)]


def latest_revisions(session: Connection) -> dict[str, Any]:
    """Each instance's newest revision (number, hash, status, base)."""
    newest = (
        select(MANIFEST.c.instance, func.max(MANIFEST.c.number).label("number"))
        .group_by(MANIFEST.c.instance)
        .subquery()
    )
    query = select(
        MANIFEST.c.instance, MANIFEST.c.number, MANIFEST.c.hash, MANIFEST.c.status, MANIFEST.c.base
    ).join(
        newest,
        (MANIFEST.c.instance == newest.c.instance) & (MANIFEST.c.number == newest.c.number),
    )
    return {row.instance: row for row in session.execute(query)}
