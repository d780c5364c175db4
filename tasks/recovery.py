"""Recovery tasks: find what dead runs left, read what their instances run, settle it."""

from __future__ import annotations

import time

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from blocks.targets import load_target
from fleet.agent.errors import TransientTargetError
from fleet.agent.target import Target
from fleet.core.errors import FleetError
from fleet.core.locks import DEFAULT_LEASE
from fleet.db import fleet as fleet_repo
from fleet.services import locks, recovery
from fleet.services._common import reading
from fleet.services.recovery import Orphan, Settled

# Who signs what recovery records: the recover flow, or a deploy finding an orphan.
RECOVERY_ACTOR = "recovery"


@task(name="find orphaned deploys", cache_policy=NO_CACHE)
def find_orphans(run: str | None, *, wait_for_leases: bool) -> list[Orphan]:
    """The open deployment records no live lease covers (of `run`, or of any run).

    With `wait_for_leases`, a run that still holds live leases (its process may
    just have stopped) is given until they run out: a lock outlives its holder
    by at most one lease.
    """
    found = recovery.orphans(run=run)
    if run is None or not wait_for_leases:
        return found
    deadline = time.monotonic() + DEFAULT_LEASE.total_seconds() + 5
    while time.monotonic() < deadline:
        live = [lease for lease in locks.held() if lease.run == run]
        if not live:
            break
        time.sleep(2)
    return recovery.orphans(run=run)


def _target_of(instance: str) -> str | None:
    with reading(None) as session:
        state = fleet_repo.load_state(session)
    return next((i.target for i in state.instances if i.name == instance), None)


def reported_running(target: Target, attempts: int = 4, delay: float = 2.0) -> str | None:
    """What the target reports running; a transient error (a slow or restarting
    agent) is retried with backoff, as a deploy's are."""
    for attempt in range(attempts):
        try:
            return target.state().manifest_hash
        except TransientTargetError:
            if attempt == attempts - 1:
                raise
            time.sleep(delay * 2**attempt)
    return None


def settle(orphan: Orphan, target: Target | None, *, flow_run_id: str) -> Settled:
    """Close the orphan as interrupted, then record what its target reports running
    (nothing when it has no target or cannot be read). The recover flow and a
    deploy that finds an orphan on its instance both settle it here."""
    logger = get_run_logger()
    recovery.close_orphan(orphan, actor=RECOVERY_ACTOR, flow_run_id=flow_run_id)
    observed = None
    if target is not None:
        try:
            observed = reported_running(target)
        except FleetError as exc:
            logger.warning("%s: could not read its target: %s", orphan.instance, exc)
    settled = recovery.settle(orphan, observed, actor=RECOVERY_ACTOR, flow_run_id=flow_run_id)
    logger.warning("%s; %s", orphan.describe(), settled.action)
    return settled


@task(name="settle orphan", task_run_name="settle {orphan.instance}", cache_policy=NO_CACHE)
def settle_orphan(orphan: Orphan, *, flow_run_id: str) -> Settled:
    """`settle`, through the target block the instance names."""
    name = _target_of(orphan.instance)
    if name is None:
        return settle(orphan, None, flow_run_id=flow_run_id)
    try:
        target = load_target(name)
    except FleetError as exc:
        get_run_logger().warning("%s: could not load its target: %s", orphan.instance, exc)
        return settle(orphan, None, flow_run_id=flow_run_id)
    try:
        return settle(orphan, target, flow_run_id=flow_run_id)
    finally:
        close = getattr(target, "close", None)
        if callable(close):
            close()
