"""Recovery tasks: find what dead runs left, read what their instances run, settle it."""

from __future__ import annotations

import time
from typing import Any

import httpx
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.exceptions import PrefectHTTPStatusError

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
# The recover flow tries an orphan whose target it cannot read again this much later
# (each try itself retries the read for about 15 s): a loaded machine or a restarting
# agent gets minutes, not seconds, before the orphan is left to the next deploy.
SETTLE_RETRIES = 3
SETTLE_RETRY_DELAYS: list[float] = [10, 30, 60]
# Each try reads the target this many times, 2, 4 then 8 s apart (read at call time).
READ_ATTEMPTS = 4
READ_DELAY = 2.0


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


def reported_running(
    target: Target, attempts: int | None = None, delay: float | None = None
) -> str | None:
    """What the target reports running; a transient error (a slow or restarting
    agent) is retried with backoff, as a deploy's are (`READ_ATTEMPTS` reads,
    `READ_DELAY` s before the second, doubling)."""
    attempts = READ_ATTEMPTS if attempts is None else attempts
    delay = READ_DELAY if delay is None else delay
    for attempt in range(attempts):
        try:
            return target.state().manifest_hash
        except TransientTargetError:
            if attempt == attempts - 1:
                raise
            time.sleep(delay * 2**attempt)
    return None


class TargetNotRead(FleetError):
    """What an orphan's instance runs could not be read (or its target block loaded):
    the orphan stays open, for a later try or the next deploy on the instance."""


def settle(
    orphan: Orphan, target: Target | None, *, flow_run_id: str, close_unread: bool = True
) -> Settled:
    """Read what the orphan's target reports running, then close the orphan as
    interrupted and record that. The recover flow and a deploy that finds an orphan
    on its instance both settle it here.

    The target is read before the record is closed: a closed record is the end of
    recovery, and closing it before the read would lose the only trace of what the
    dead run was deploying whenever the read fails. With `close_unread` (a deploy,
    which records what it applies next) an orphan whose target cannot be read is
    closed recording nothing; without it (the recover flow) an orphan whose target
    cannot be read *now* (a transient error) stays open and `TargetNotRead` is
    raised. A target that refuses for good (no block, a wrong token) is never read:
    its orphan is closed recording nothing, and the drift check reports the rest.
    """
    logger = get_run_logger()
    observed = None
    if target is not None:
        try:
            observed = reported_running(target)
        except FleetError as exc:
            if isinstance(exc, TransientTargetError) and not close_unread:
                raise TargetNotRead(f"{orphan.instance}: could not read its target: {exc}") from exc
            logger.warning("%s: could not read its target: %s", orphan.instance, exc)
    if not recovery.close_orphan(orphan, actor=RECOVERY_ACTOR, flow_run_id=flow_run_id):
        # Settled meanwhile by whoever closed it (a deploy under the instance's lock,
        # or another recover run), which records what runs: what this one read may
        # be older than what that one applied since.
        logger.warning("%s; closed meanwhile by another run", orphan.describe())
        return Settled(orphan, observed, "closed-meanwhile")
    settled = recovery.settle(orphan, observed, actor=RECOVERY_ACTOR, flow_run_id=flow_run_id)
    logger.warning("%s; %s", orphan.describe(), settled.action)
    return settled


def _retry_unread(task: object, task_run: object, state: State[Any]) -> bool:
    """Retry a settle whose target could not be loaded or read (a slow, restarting or
    overloaded agent or Prefect server); its orphan is still open."""
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, TargetNotRead | httpx.TransportError | PrefectHTTPStatusError)


@task(
    name="settle orphan",
    task_run_name="settle {orphan.instance}",
    cache_policy=NO_CACHE,
    retries=SETTLE_RETRIES,
    retry_delay_seconds=SETTLE_RETRY_DELAYS,
    retry_condition_fn=_retry_unread,
)
def settle_orphan(orphan: Orphan, *, flow_run_id: str) -> Settled:
    """`settle`, through the target block the instance names. An orphan whose target
    cannot be loaded (the Prefect server does not answer) or read now is left open
    and the task tried again later."""
    name = _target_of(orphan.instance)
    if name is None:
        return settle(orphan, None, flow_run_id=flow_run_id)
    try:
        target = load_target(name)
    except FleetError as exc:  # no such block, or one no try will read
        get_run_logger().warning("%s: could not load its target: %s", orphan.instance, exc)
        return settle(orphan, None, flow_run_id=flow_run_id)
    try:
        return settle(orphan, target, flow_run_id=flow_run_id, close_unread=False)
    finally:
        close = getattr(target, "close", None)
        if callable(close):
            close()
