"""The compliance table of the fleet, and the security floor of a rollback."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine

from fleet.core.advisories import Advisory, Security
from fleet.core.channels import effective_policy
from fleet.core.compliance import ComplianceRow, compliance_rows
from fleet.core.errors import NotFoundError
from fleet.core.rollback import RollbackTarget, choose_rollback
from fleet.db import fleet as fleet_repo
from fleet.db.history import load_revisions
from fleet.services._common import now_or_clock, reading

__all__ = ["RollbackPreview", "compliance_report", "rollback_preview"]


def compliance_report(
    *,
    now: datetime | None = None,
    advisories: Collection[str] | None = None,
    instances: Collection[str] | None = None,
    engine: Engine | None = None,
) -> list[ComplianceRow]:
    """Every advisory affecting what the (selected) instances run, with its status.

    Raises `NotFoundError` naming an advisory id the fleet does not know.
    """
    now = now_or_clock(now)
    with reading(engine) as session:
        state = fleet_repo.load_state(session)
    known = {a.id for a in state.advisories}
    unknown = sorted(set(advisories or ()) - known)
    if unknown:
        raise NotFoundError(f"Unknown advisory: {', '.join(unknown)!r}")
    return compliance_rows(state, now, advisories=advisories, instances=instances)


@dataclass(frozen=True, slots=True)
class RollbackPreview:
    """The revision a rollback would restore, the enforced advisories affecting it,
    and the instance's effective policy and approvals."""

    instance: str
    revision: int
    blocking: tuple[Advisory, ...]
    policy: str = "auto-update"
    approvals_required: int = 1


def rollback_preview(
    instance: str,
    target: RollbackTarget | str,
    *,
    now: datetime | None = None,
    engine: Engine | None = None,
) -> RollbackPreview:
    """Which revision `target` names and what stands in its way; stores nothing."""
    now = now_or_clock(now)
    if isinstance(target, str):
        target = RollbackTarget.parse(target)
    with reading(engine) as session:
        state = fleet_repo.load_state(session)
        found = next((i for i in state.instances if i.name == instance), None)
        if found is None:
            raise NotFoundError(f"Unknown instance: {instance!r}")
        history = load_revisions(session, instance=instance)
    chosen = choose_rollback(instance, history, target, now=now)
    security = Security(
        state.advisories, state.risk_acceptances, now=now, deadlines=state.deadlines
    )
    blocking = [f.advisory for f in security.enforced(instance, chosen.target.manifest.components)]
    channel = state.channels[found.channel]
    policy = effective_policy(channel, found.policy_override)
    return RollbackPreview(
        instance, chosen.rollback_of, tuple(blocking), str(policy), channel.approvals_required
    )
