"""Rollback tasks: record risk acceptances, store the rollback revision, verify."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from prefect import task
from prefect.cache_policies import INPUTS, NO_CACHE, RUN_ID

from blocks.targets import load_target
from fleet.core.errors import FleetError
from fleet.db.audit import Entry
from fleet.services import advisories, audit, manifests, rollouts, security
from fleet.services.rollouts import DeploySpec
from fleet.services.security import RollbackPreview


# Cached for the run (as `store rollback`): a resumed run must see the
# target it chose, not the one that a rollback it deployed since makes `previous`.
@task(name="preview rollback", cache_policy=INPUTS + RUN_ID, persist_result=True)
def preview_rollback(
    instance: str, target: str, *, at: datetime | None, flow_run_id: str
) -> RollbackPreview:
    return security.rollback_preview(instance, target, now=at)


@task(name="record rollback request", cache_policy=INPUTS + RUN_ID, persist_result=True)
def record_request(
    instances: list[str], *, target: str, reason: str, actor: str, flow_run_id: str
) -> None:
    """The reason goes into the audit trail once per run."""
    audit.append(
        [
            Entry("rollback.request", f"instance:{name}", {"target": target, "reason": reason})
            for name in instances
        ],
        actor=actor,
        flow_run_id=flow_run_id,
    )


@task(name="accept risk", cache_policy=INPUTS + RUN_ID, persist_result=True)
def accept_risk(
    instance: str,
    advisory: str,
    *,
    by: str,
    reason: str,
    until: datetime,
    at: datetime | None,
    flow_run_id: str,
) -> None:
    advisories.accept_risk(instance, advisory, reason=reason, until=until, actor=by, now=at)


# Cached for the run: a suspended run replays from the top and must find the
# revision it stored, not store another one.
@task(
    name="store rollback",
    task_run_name="store rollback of {instance}",
    cache_policy=INPUTS + RUN_ID,
    persist_result=True,
)
def store_rollback(
    instance: str,
    target: str,
    *,
    actor: str,
    at: datetime | None,
    flow_run_id: str,
    approvals_required: int,
) -> DeploySpec:
    stored = manifests.rollback(instance, target, actor=actor, now=at, flow_run_id=flow_run_id)
    spec = rollouts.rollback_spec(instance, stored.number)
    return replace(spec, approvals_required=approvals_required)


@task(name="verify instance", task_run_name="verify {spec.instance}", cache_policy=NO_CACHE)
def verify_instance(spec: DeploySpec) -> str | None:
    """None when the target runs the spec's manifest, else what it runs instead."""
    target = load_target(spec.target or spec.instance)
    try:
        state = target.state()
    except FleetError as exc:
        return f"cannot read state: {exc}"
    finally:
        close = getattr(target, "close", None)
        if callable(close):
            close()
    if state.manifest_hash != spec.manifest_hash:
        return f"runs {state.manifest_hash or 'nothing'}, expected {spec.manifest_hash}"
    return None
