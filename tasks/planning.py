"""Plan a rollout: compile and store the manifests in one task for the whole selection."""

from __future__ import annotations

from datetime import datetime

from prefect import task
from prefect.cache_policies import INPUTS, RUN_ID

from fleet.services import rollouts


# Cached for the run: a suspended run that resumes re-executes from the top
# and must find the plan it showed to its approvers, not a newer one.
@task(name="plan rollout", cache_policy=INPUTS + RUN_ID, persist_result=True)
def plan_rollout(
    *,
    instances: list[str],
    channels: list[str],
    labels: dict[str, str],
    at: datetime | None,
    dry_run: bool,
    requested_by: str,
    flow_run_id: str,
) -> rollouts.PreparedRollout:
    return rollouts.prepare_rollout(
        actor=requested_by,
        now=at,
        instances=instances or None,
        channels=channels or None,
        labels=labels or None,
        flow_run_id=flow_run_id,
        dry_run=dry_run,
    )
