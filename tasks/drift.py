"""Drift tasks: ask a target what it runs, keep what was found, store the repair revision."""

from __future__ import annotations

from dataclasses import replace

from prefect import task
from prefect.cache_policies import INPUTS, NO_CACHE, RUN_ID

from blocks.targets import load_target
from fleet.core.drift import Drift, compare
from fleet.services import drift, rollouts
from fleet.services.drift import Recorded
from fleet.services.rollouts import DeploySpec


@task(name="read recorded manifests", cache_policy=NO_CACHE)
def read_recorded(instances: list[str]) -> list[Recorded]:
    return drift.recorded_manifests(instances or None)


@task(
    name="observe instance",
    task_run_name="observe {recorded.instance}",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[0.5, 1],
)
def observe(recorded: Recorded) -> Drift:
    """Ask the instance's target what it runs and compare with Fleet's record."""
    assert recorded.target is not None
    target = load_target(recorded.target)
    try:
        state = target.state()
    finally:
        close = getattr(target, "close", None)
        if callable(close):
            close()
    known = recorded.revision is not None
    return compare(
        recorded.instance,
        revision=recorded.revision,
        recorded=recorded.versions,
        recorded_hash=recorded.hash if known else None,
        observed=state.components,
        observed_hash=state.manifest_hash if known else None,
    )


@task(name="check for deploys under way", cache_policy=NO_CACHE)
def in_motion(checked: list[Recorded]) -> dict[str, str]:
    """Instances a deploy has under way or recorded since they were read: not judged."""
    return drift.in_motion(checked)


@task(name="record drift", cache_policy=NO_CACHE)
def record_drift(checked: list[str], found: list[Drift], *, actor: str, flow_run_id: str) -> None:
    """Keep the check's findings in Fleet's records (the console shows them)."""
    drift.record_check(checked, found, actor=actor, flow_run_id=flow_run_id)


@task(
    name="store repair",
    task_run_name="store repair of {instance}",
    cache_policy=INPUTS + RUN_ID,
    persist_result=True,
)
def store_repair(instance: str, *, actor: str, reason: str, flow_run_id: str) -> DeploySpec:
    number = drift.store_repair(instance, actor=actor, reason=reason, flow_run_id=flow_run_id)
    return replace(rollouts.rollback_spec(instance, number), decision="repair")
