"""Deploy one instance: lock it, apply through its target, verify, roll back on failure.

One task per instance does fetch, apply and verify (task runs stay
proportional to instances); the rollout holds the instances' locks around
each wave (`locked`), so two runs never touch one instance at once. It
retries only transient target errors; a permanent failure or a failed health
check rolls the instance back to its last good manifest and is recorded
`rolled-back`.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import ConcurrencyLeaseHolder
from prefect.concurrency._asyncio import ConcurrencySlotAcquisitionError
from prefect.concurrency._events import _emit_concurrency_event
from prefect.concurrency._leases import maintain_concurrency_lease
from prefect.concurrency._sync import (
    acquire_concurrency_slots_with_lease,
    release_concurrency_slots_with_lease,
)
from prefect.events import Event
from prefect.exceptions import ObjectAlreadyExists
from prefect.runtime import flow_run

from blocks.targets import TargetBlock, load_target_blocks
from fleet.agent.errors import PermanentTargetError, TransientTargetError
from fleet.agent.models import Manifest
from fleet.agent.target import Target
from fleet.core.errors import FleetError
from fleet.services import rollouts
from fleet.services.rollouts import DeploySpec
from tasks._tagcheck import all_concurrency_limits

LOCK_PREFIX = "fleet-instance-"


def lock_name(instance: str) -> str:
    return f"{LOCK_PREFIX}{instance}"


@dataclass(frozen=True, slots=True)
class InstanceOutcome:
    instance: str
    revision: int
    outcome: str
    detail: str = ""


# Each run's halt signal in this process, held by its rollout loop (entries go with it).
_HALTS: weakref.WeakValueDictionary[str, threading.Event] = weakref.WeakValueDictionary()
_HALTS_LOCK = threading.Lock()


def halt_signal(run_id: str) -> threading.Event:
    """The run's halt signal: once set, a deploy task of the run that has not started
    returns `halted` without touching its instance. Keep it while the rollout runs
    (it is held weakly here)."""
    with _HALTS_LOCK:
        signal = _HALTS.get(run_id)
        if signal is None:
            signal = threading.Event()
            _HALTS[run_id] = signal
        return signal


# A lock lease is renewed at three quarters of this, while the wave runs.
LOCK_LEASE_SECONDS = 300


@contextmanager
def locked(instances: list[str], *, timeout: float) -> Iterator[None]:
    """Hold the locks of `instances` (a wave) while the wave runs.

    Each instance has its own global concurrency limit of 1. The wave takes
    them all in one request, which the server grants whole or not at all, so
    two runs wanting overlapping sets cannot deadlock, and a wave of 200 costs
    one request, not one per instance. The acquisition is strict: a limit
    missing on the server is an error, never a silent no-lock. `timeout`
    bounds the wait for another run's locks.

    This is what `prefect.concurrency.sync.concurrency(names, strict=True)`
    does, with two differences: it checks that *every* limit exists (Prefect
    only errors when none does), and each lock's acquired/released event
    names that lock alone. Prefect relates every lock of a request to all
    the others, and refuses an event with more than 100 related resources:
    a wave of 200 lost all its events.
    """
    names = sorted(lock_name(n) for n in set(instances))
    if not names:
        yield
        return
    run_id = flow_run.id
    holder = ConcurrencyLeaseHolder(type="flow_run", id=UUID(run_id)) if run_id else None
    lease = acquire_concurrency_slots_with_lease(
        names,
        1,
        timeout_seconds=timeout,
        lease_duration=LOCK_LEASE_SECONDS,
        strict=True,
        holder=holder,
    )
    acquired: dict[UUID, Event | None] = {}
    try:
        missing = sorted(set(names) - {limit.name for limit in lease.limits})
        if missing:
            raise ConcurrencySlotAcquisitionError(
                f"No concurrency limit for {', '.join(missing)}: run `fleet setup` "
                "or the rollout's `ensure instance locks` task first"
            )
        acquired = {
            limit.id: _emit_concurrency_event("acquired", limit, [limit], 1)
            for limit in lease.limits
        }
        with maintain_concurrency_lease(
            lease.lease_id, LOCK_LEASE_SECONDS, raise_on_lease_renewal_failure=True
        ):
            yield
    finally:  # a wave that failed releases its locks, and says so, too
        release_concurrency_slots_with_lease(lease.lease_id)
        for limit in lease.limits:
            if limit.id in acquired:
                _emit_concurrency_event("released", limit, [limit], 1, follows=acquired[limit.id])


@task(name="ensure instance locks", cache_policy=NO_CACHE)
def ensure_instance_locks(instances: list[str]) -> None:
    """A global concurrency limit of 1 per instance; strict acquisition needs it to exist.

    `fleet setup` creates them; this reads them all in a few pages and creates
    only those missing (an instance added since).
    """
    with get_client(sync_client=True) as client:
        existing = all_concurrency_limits(client)
        for name in instances:
            if existing.get(lock_name(name)) != 1:
                # Two runs starting at once may both find it missing; the second's
                # create then finds the first's limit of 1, which is what it wanted.
                with suppress(ObjectAlreadyExists):
                    client.upsert_global_concurrency_limit_by_name(lock_name(name), 1)


def _transient_only(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only what a retry can fix (connection trouble, 5xx, a busy instance)."""
    try:
        state.result(raise_on_failure=True)
    except TransientTargetError:
        return True
    except Exception:
        return False
    return False


def _rollback(target: Target, spec: DeploySpec) -> str:
    """Undo a switch that happened; an apply refused before switching left nothing to undo."""
    current = target.state().manifest_hash
    if current != spec.manifest_hash:
        return f"the instance still runs {current or 'nothing'}; nothing to undo"
    result = target.rollback(spec.good_hash)
    return f"rolled back to {result.manifest_hash}"


@contextmanager
def _opened(block: TargetBlock) -> Iterator[Target]:
    """The target block's client, closed afterwards when it holds connections."""
    target: Target = block.get_client()
    try:
        yield target
    finally:
        close = getattr(target, "close", None)
        if callable(close):
            close()


@task(name="load targets", cache_policy=NO_CACHE)
def load_targets(names: list[str]) -> dict[str, TargetBlock]:
    """Every instance's target block, in a few requests for the whole rollout."""
    return load_target_blocks(names)


def deploy(
    spec: DeploySpec, target_block: TargetBlock | None, *, actor: str, run_id: str
) -> InstanceOutcome:
    """The body of the deploy task. The caller holds the instance's lock (`locked`)."""
    logger = get_run_logger()
    signal = _HALTS.get(run_id)
    if signal is not None and signal.is_set():
        # Failures passed the threshold while this deploy waited for a thread.
        if rollouts.record_started(spec, flow_run_id=run_id, actor=actor) in (None, "running"):
            rollouts.record_finished(
                spec, "halted", flow_run_id=run_id, actor=actor, error="rollout halted"
            )
        return InstanceOutcome(spec.instance, spec.revision, "halted", "rollout halted")
    recorded = rollouts.record_started(spec, flow_run_id=run_id, actor=actor)
    if recorded not in (None, "running"):
        # This run finished this instance before (a resumed run re-executes).
        return InstanceOutcome(spec.instance, spec.revision, recorded, "recorded earlier")
    if target_block is None:
        error = (
            f"{spec.instance} has no target block to deploy through"
            if spec.target is None
            else f"No target block named {spec.target!r}"
        )
        rollouts.record_finished(spec, "failed", flow_run_id=run_id, actor=actor, error=error)
        return InstanceOutcome(spec.instance, spec.revision, "failed", error)
    with _opened(target_block) as target:
        try:
            result = target.apply(Manifest.model_validate(dict(spec.manifest)))
            target.health().raise_for_health()
        except TransientTargetError:
            raise
        except PermanentTargetError as exc:
            logger.warning("%s: %s; rolling back", spec.instance, exc)
            try:
                undone = _rollback(target, spec)
            except FleetError as undo:
                error = f"{exc}; rollback failed too: {undo}"
                rollouts.record_finished(
                    spec, "failed", flow_run_id=run_id, actor=actor, error=error
                )
                return InstanceOutcome(spec.instance, spec.revision, "failed", error)
            error = f"{exc} ({undone})"
            rollouts.record_finished(
                spec, "rolled-back", flow_run_id=run_id, actor=actor, error=error
            )
            return InstanceOutcome(spec.instance, spec.revision, "rolled-back", error)
    rollouts.record_finished(spec, "succeeded", flow_run_id=run_id, actor=actor)
    logger.info("%s r%s: %s", spec.instance, spec.revision, result.message)
    return InstanceOutcome(spec.instance, spec.revision, "succeeded", result.message)


@task(
    name="deploy instance",
    task_run_name="deploy {spec.instance} r{spec.revision}",
    cache_policy=NO_CACHE,
    retries=4,
    retry_delay_seconds=[0.5, 1, 2, 4],
    retry_jitter_factor=0.5,
    retry_condition_fn=_transient_only,
)
def deploy_instance(
    spec: DeploySpec, target_block: TargetBlock | None, *, actor: str
) -> InstanceOutcome:
    return deploy(spec, target_block, actor=actor, run_id=str(flow_run.id))


@task(name="check approvals", cache_policy=NO_CACHE)
def check_approvals(specs: list[DeploySpec]) -> dict[str, str]:
    """Instance -> why its approval went stale, for approved specs about to deploy
    (the caller holds their locks)."""
    return rollouts.stale_approvals(specs, flow_run_id=str(flow_run.id))


@task(name="record outcome", cache_policy=NO_CACHE)
def record_outcome(spec: DeploySpec, outcome: str, *, actor: str, error: str | None = None) -> None:
    """Record an outcome the deploy task could not (halted, expired, rejected, gave up)."""
    run_id = str(flow_run.id)
    if rollouts.record_started(spec, flow_run_id=run_id, actor=actor) in (None, "running"):
        rollouts.record_finished(spec, outcome, flow_run_id=run_id, actor=actor, error=error)
