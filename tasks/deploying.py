"""Deploy instances: lock each, apply through its target, verify, roll back on failure.

A deploy task run deploys one instance, or a chunk of a big wave's instances
one after another (`deploy_instances`): Prefect's cost of a task run
(its states, events and engine) is then paid once per chunk, while
everything per instance stays Fleet's: its lock, retries, records, audit
events and a log line each. Each deploy takes its instance's lock in Fleet's
database (`fleet.services.locks`: a lease its process renews, free again
once a holder that died stops renewing it) and holds it from before it looks
at the instance until its record is written, so two runs never touch one
instance at once and a wave never waits for more than its own instances: an
instance another run holds for longer than the rollout waits is reported
`locked`, naming the run, and the rest of the wave goes on.

Under the lock, before it applies anything, a deploy:
- settles what a dead run left open on the instance (recovery);
- reports `already-deployed` when the revision already runs there (another
  run deployed it);
- checks an approved revision against the fleet as it is now
  (`stale-approval`);
- records the security waiver of an enforced fix, only now that it deploys.
It retries transient target errors itself, with backoff, the lock held; a
permanent failure or a failed health check rolls the instance back to its
last good manifest and is recorded `rolled-back`.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from sqlalchemy import Connection

from blocks.targets import TargetBlock, load_target_blocks
from fleet.agent.errors import PermanentTargetError, TransientTargetError
from fleet.agent.models import Manifest
from fleet.agent.target import Target
from fleet.core.errors import FleetError
from fleet.services import approvals, deployments, locks, rollouts
from fleet.services.locks import Holding, LockTimeout
from fleet.services.rollouts import DeploySpec, UnderLock
from tasks.recovery import settle

# Retry jitter from a generator of its own: the global one is left to its users. A
# process forked from one that imported this module (a warm start) seeds it anew, or
# concurrent runs would retry in step.
_JITTER = random.Random()
os.register_at_fork(after_in_child=_JITTER.seed)

SECURITY_POLICY = "security-policy"


@dataclass(frozen=True, slots=True)
class InstanceOutcome:
    instance: str
    revision: int
    outcome: str
    detail: str = ""


class Watch:
    """What one run's rollout loop keeps in this process: its halt signal, and
    who counts each deploy's outcome as it ends (in the thread that ran it)."""

    def __init__(self) -> None:
        self.halt = threading.Event()
        self.count: Callable[[InstanceOutcome], None] | None = None


# Each run's watch in this process, held by its rollout loop (entries go with it).
_WATCHES: weakref.WeakValueDictionary[str, Watch] = weakref.WeakValueDictionary()
_WATCHES_LOCK = threading.Lock()


def watch(run_id: str) -> Watch:
    """The run's watch: once its halt signal is set, a deploy of the run that has
    not started returns `halted` without touching its instance. Keep it while the
    rollout runs (it is held weakly here)."""
    with _WATCHES_LOCK:
        found = _WATCHES.get(run_id)
        if found is None:
            found = Watch()
            _WATCHES[run_id] = found
        return found


def _rollback(target: Target, spec: DeploySpec) -> str:
    """Undo a switch that happened; an apply refused before switching left nothing to undo."""
    current = target.state().manifest_hash
    if current != spec.manifest_hash:
        return f"the instance still runs {current or 'nothing'}; nothing to undo"
    result = target.rollback(spec.good_hash)
    return f"rolled back to {result.manifest_hash}"


@contextmanager
def _opened(block: TargetBlock) -> Iterator[Target]:
    """The target block's client, closed afterwards when it holds connections (a
    close that fails is logged: what the deploy did stands)."""
    target: Target = block.get_client()
    try:
        yield target
    finally:
        close = getattr(target, "close", None)
        if callable(close):
            try:
                close()
            except Exception as exc:
                get_run_logger().warning("closing the target's client failed: %s", exc)


@task(name="load targets", cache_policy=NO_CACHE)
def load_targets(names: list[str]) -> dict[str, TargetBlock]:
    """Every instance's target block, in a few requests for the whole rollout."""
    return load_target_blocks(names)


def deploy(
    spec: DeploySpec,
    target_block: TargetBlock | None,
    *,
    actor: str,
    run_id: str,
    retries: int = 4,
    retry_delay: float = 0.5,
    lock_timeout: float = 600.0,
) -> InstanceOutcome:
    """The body of the deploy task: the instance's lock, then everything under it.

    The transaction that takes the lock reads what the deploy must know and,
    when nothing needs a look first, opens its record; the one that records
    its end lets the lock go.
    """
    watching = _WATCHES.get(run_id)
    if watching is not None and watching.halt.is_set():
        # Failures passed the threshold while this deploy waited for a thread.
        return _close(spec, "halted", actor=actor, run_id=run_id, error="rollout halted")
    # An approved revision is checked for staleness before its record opens.
    start = target_block is not None and not spec.approved

    def begin(session: Connection) -> UnderLock:
        return rollouts.begin_in(session, spec, flow_run_id=run_id, actor=actor, start=start)

    try:
        with locks.keeper().hold(
            spec.instance, run=run_id, timeout=lock_timeout, then=begin
        ) as holding:
            return _deploy_locked(
                spec,
                target_block,
                holding,
                actor=actor,
                run_id=run_id,
                retries=retries,
                delay=retry_delay,
            )
    except LockTimeout as exc:
        get_run_logger().warning("%s", exc)
        return _close(spec, "locked", actor=actor, run_id=run_id, error=str(exc))


def _close(
    spec: DeploySpec,
    outcome: str,
    *,
    actor: str,
    run_id: str,
    error: str | None,
    holding: Holding | None = None,
) -> InstanceOutcome:
    """Record an outcome that deployed nothing (once: a re-run finds it recorded);
    the lock `holding` goes with the record."""
    recorded = rollouts.record_started(spec, flow_run_id=run_id, actor=actor)
    if recorded not in (None, "running"):
        return InstanceOutcome(spec.instance, spec.revision, recorded, "recorded earlier")
    _finish(spec, outcome, actor=actor, run_id=run_id, error=error, holding=holding)
    return InstanceOutcome(spec.instance, spec.revision, outcome, error or "")


def _finish(
    spec: DeploySpec,
    outcome: str,
    *,
    actor: str,
    run_id: str,
    error: str | None = None,
    holding: Holding | None,
) -> None:
    """Close the deployment record; with `holding`, its lock goes in the same transaction."""
    rollouts.record_finished(
        spec, outcome, flow_run_id=run_id, actor=actor, error=error, release=holding is not None
    )
    if holding is not None:
        holding.released = True


def _deploy_locked(
    spec: DeploySpec,
    target_block: TargetBlock | None,
    holding: Holding,
    *,
    actor: str,
    run_id: str,
    retries: int,
    delay: float,
    succeeded: Callable[[], None] | None = None,
) -> InstanceOutcome:
    """Everything a deploy does under its lock. `succeeded()`, when given, records
    a deploy that succeeded (with the lock's release) instead of a transaction of
    its own: a chunk records those together. Every other end is recorded at once,
    as recovery could not tell it from the target."""
    logger = get_run_logger()
    seen = holding.then
    assert isinstance(seen, UnderLock)
    if seen.outcome not in (None, "running"):
        # This run finished this instance before (a resumed run re-executes).
        return InstanceOutcome(spec.instance, spec.revision, seen.outcome, "recorded earlier")
    close = partial(_close, spec, actor=actor, run_id=run_id, holding=holding)
    finish = partial(_finish, spec, actor=actor, run_id=run_id, holding=holding)
    if target_block is None:
        for orphan in seen.orphans:
            settle(orphan, None, flow_run_id=run_id)
        error = (
            f"{spec.instance} has no target block to deploy through"
            if spec.target is None
            else f"No target block named {spec.target!r}"
        )
        return close("failed", error=error)
    with _opened(target_block) as target:
        running = seen.running
        if seen.orphans:
            for orphan in seen.orphans:  # we hold the lock: every other open record is one
                settle(orphan, target, flow_run_id=run_id)
            running = rollouts.running_revision(spec.instance)  # settling may have moved it
        if running == spec.revision:
            why = f"r{spec.revision} already runs on {spec.instance} (deployed by another run)"
            logger.info("%s", why)
            return close("already-deployed", error=why)
        if spec.approved:
            stale = rollouts.stale_approvals([spec], flow_run_id=run_id).get(spec.instance)
            if stale is not None:
                logger.warning("%s: %s", spec.instance, stale)
                return close("stale-approval", error=stale)
        if not seen.started:
            rollouts.record_started(spec, flow_run_id=run_id, actor=actor)
        if spec.waiver is not None:
            _record_waiver(spec, run_id)
        attempt = 0
        while True:
            try:
                result = target.apply(Manifest.model_validate(dict(spec.manifest)))
                target.health().raise_for_health()
                break
            except TransientTargetError as exc:
                if attempt >= retries:
                    error = f"{exc} (after {retries} retries)"
                    finish("failed", error=error)
                    return InstanceOutcome(spec.instance, spec.revision, "failed", error)
                wait = delay * 2**attempt * (1 + _JITTER.uniform(-0.5, 0.5))
                logger.info("%s: %s; retry %s in %.1f s", spec.instance, exc, attempt + 1, wait)
                attempt += 1
                time.sleep(wait)
            except PermanentTargetError as exc:
                logger.warning("%s: %s; rolling back", spec.instance, exc)
                try:
                    undone = _rollback(target, spec)
                except FleetError as undo:
                    error = f"{exc}; rollback failed too: {undo}"
                    finish("failed", error=error)
                    return InstanceOutcome(spec.instance, spec.revision, "failed", error)
                error = f"{exc} ({undone})"
                finish("rolled-back", error=error)
                return InstanceOutcome(spec.instance, spec.revision, "rolled-back", error)
    if succeeded is None:
        finish("succeeded")
    else:
        succeeded()
    return InstanceOutcome(spec.instance, spec.revision, "succeeded", result.message)


def _record_waiver(spec: DeploySpec, run_id: str) -> None:
    """An enforced fix needs no approval: record it as waived, once, as it deploys."""
    for given in approvals.given(run_id):
        if given.instance == spec.instance and given.decision == "waived":
            return
    deployments.record_approval(
        spec.instance,
        approver=SECURITY_POLICY,
        decision="waived",
        comment=spec.waiver or "",
        flow_run_id=run_id,
        manifest_number=spec.revision,
        manifest_hash=spec.manifest_hash,
        via="policy",
    )
    get_run_logger().info("%s r%s: approval waived (%s)", spec.instance, spec.revision, spec.waiver)


def chunk_label(specs: Sequence[DeploySpec]) -> str:
    """A deploy task run's name: the instance and revision, or a chunk's first and last."""
    if len(specs) == 1:
        return f"{specs[0].instance} r{specs[0].revision}"
    return f"{specs[0].instance} … {specs[-1].instance} ({len(specs)} instances)"


# The longest a chunk's success waits to be recorded with others (a deploy that
# is slower than this is recorded after the next one ends): applies that take
# milliseconds are recorded a whole chunk at a time, installs that take minutes
# one by one, and no instance stays locked long after its deploy ended.
RECORD_SUCCESSES_EVERY = 2.0


class _Succeeded:
    """A chunk's deploys that succeeded, recorded together with their locks'
    release: when the chunk ends, or once the first of them has waited
    `RECORD_SUCCESSES_EVERY` seconds; one transaction for many, not one per
    instance. Until then each instance stays locked and its record open; a run
    killed meanwhile leaves them to recovery, which finds the revision running
    on the target and records it so. Any other end is recorded at once."""

    def __init__(self, *, actor: str, run_id: str) -> None:
        self.actor = actor
        self.run_id = run_id
        self.pending: dict[str, tuple[DeploySpec, Holding]] = {}
        self.since = 0.0

    def add(self, spec: DeploySpec, holding: Holding) -> None:
        if not self.pending:
            self.since = time.monotonic()
        self.pending[spec.instance] = (spec, holding)

    def due(self) -> bool:
        """The first pending success has waited long enough."""
        return bool(self.pending) and time.monotonic() - self.since >= RECORD_SUCCESSES_EVERY

    def record(self) -> None:
        """Record the pending ends; should one be refused (its revision's status
        moved, or its record was closed by another run when its lease ran out),
        each is recorded alone, and a refused one's record closed without it."""
        pending, self.pending = list(self.pending.values()), {}
        if not pending:
            return
        ends = [(spec, "succeeded", None) for spec, _ in pending]
        try:
            rollouts.record_ended(ends, flow_run_id=self.run_id, actor=self.actor, release=True)
        except FleetError:
            for spec, holding in pending:
                self._record_alone(spec, holding)
            return
        for _, holding in pending:
            holding.released = True

    def _record_alone(self, spec: DeploySpec, holding: Holding) -> None:
        try:
            _finish(spec, "succeeded", actor=self.actor, run_id=self.run_id, holding=holding)
            return
        except FleetError as exc:
            refused = exc
        get_run_logger().warning(
            "%s r%s: its success could not be recorded: %s", spec.instance, spec.revision, refused
        )
        # The record alone, closed as recovery closes a deploy it cannot record as
        # running, saying why; one closed by another run meanwhile says what it found.
        with contextlib.suppress(FleetError):
            deployments.finish_deployment(
                spec.instance,
                flow_run_id=self.run_id,
                outcome="interrupted",
                error=f"applied and healthy, but not recorded as running: {refused}",
                actor=self.actor,
            )


@task(name="deploy instances", task_run_name="deploy {label}", cache_policy=NO_CACHE)
def deploy_instances(
    specs: list[DeploySpec],
    target_blocks: list[TargetBlock | None],
    *,
    label: str,
    actor: str,
    retries: int = 4,
    retry_delay: float = 0.5,
    lock_timeout: float = 600.0,
) -> list[InstanceOutcome]:
    """Deploy `specs` one after another, each through its target block.

    The chunk's free locks are taken together, with its records opened in the
    same transaction (`LockKeeper.hold_many`, `rollouts.begin_many_in`), and the
    deploys that succeeded are recorded together, at the end or every few
    seconds (`_Succeeded`); any other end is recorded as it happens. An
    instance another run holds is deployed last, waiting for its lock alone
    with no other held. Each outcome is counted by the run's watch as it ends,
    so a halt stops the rest of the chunk at once; an instance whose deploy
    raised is recorded `failed` and the chunk goes on.
    """
    run_id = str(flow_run.id)
    logger = get_run_logger()
    watching = _WATCHES.get(run_id)
    outcomes: dict[str, InstanceOutcome] = {}

    def halted() -> bool:
        return watching is not None and watching.halt.is_set()

    def ended(
        spec: DeploySpec, run: Callable[[], InstanceOutcome], holding: Holding | None = None
    ) -> None:
        try:
            outcome = run()
        except Exception as exc:  # this instance failed; the chunk's others go on
            error = f"{type(exc).__name__}: {exc}"
            logger.error("%s r%s: %s", spec.instance, spec.revision, error)
            try:
                outcome = _close(
                    spec, "failed", actor=actor, run_id=run_id, error=error, holding=holding
                )
            except FleetError as refused:  # e.g. its revision is gone: nothing to record on
                error = f"{error} (not recorded: {refused})"
                outcome = InstanceOutcome(spec.instance, spec.revision, "failed", error)
        # One line per instance, its outcome and what the target or Fleet said.
        said = f" ({outcome.detail})" if outcome.detail else ""
        logger.info("%s r%s: %s%s", spec.instance, spec.revision, outcome.outcome, said)
        if watching is not None and watching.count is not None:
            watching.count(outcome)
        outcomes[spec.instance] = outcome

    starting = {
        spec.instance
        for spec, block in zip(specs, target_blocks, strict=True)
        if block is not None and not spec.approved
    }

    def begin(session: Connection, taken: list[str]) -> Mapping[str, UnderLock]:
        names = set(taken)
        chunk = [spec for spec in specs if spec.instance in names]
        return rollouts.begin_many_in(
            session, chunk, flow_run_id=run_id, actor=actor, starting=starting
        )

    succeeded = _Succeeded(actor=actor, run_id=run_id)
    wanted = [] if halted() else [spec.instance for spec in specs]
    with contextlib.ExitStack() as stack:
        try:
            held = stack.enter_context(locks.keeper().hold_many(wanted, run=run_id, then=begin))
        except Exception as exc:  # e.g. one instance's revision is gone: each goes alone
            logger.warning("the chunk's locks could not be taken together (%s); one by one", exc)
            held = {}
        try:
            for spec, block in zip(specs, target_blocks, strict=True):
                holding = held.get(spec.instance)
                if holding is not None:
                    chunked = partial(_held, spec, block, holding, succeeded, actor=actor)
                    run = partial(chunked, run_id=run_id, retries=retries, delay=retry_delay)
                    ended(spec, run, holding)
                    if succeeded.due():
                        succeeded.record()
        finally:
            succeeded.record()
    for spec, block in zip(specs, target_blocks, strict=True):
        if spec.instance not in outcomes:  # its lock was not free: wait for it alone
            alone = partial(deploy, spec, block, actor=actor, run_id=run_id, retries=retries)
            ended(spec, partial(alone, retry_delay=retry_delay, lock_timeout=lock_timeout))
    return [outcomes[spec.instance] for spec in specs]


def _held(
    spec: DeploySpec,
    block: TargetBlock | None,
    holding: Holding,
    succeeded: _Succeeded,
    *,
    actor: str,
    run_id: str,
    retries: int,
    delay: float,
) -> InstanceOutcome:
    """One deploy of a chunk, its lock taken with the chunk's (`deploy_instances`)."""
    watching = _WATCHES.get(run_id)
    seen = holding.then
    assert isinstance(seen, UnderLock)
    if watching is not None and watching.halt.is_set():
        # Failures passed the threshold while the chunk deployed others.
        return _close(
            spec, "halted", actor=actor, run_id=run_id, error="rollout halted", holding=holding
        )
    return _deploy_locked(
        spec,
        block,
        holding,
        actor=actor,
        run_id=run_id,
        retries=retries,
        delay=delay,
        succeeded=partial(succeeded.add, spec, holding),
    )


@task(name="record outcome", cache_policy=NO_CACHE)
def record_outcome(spec: DeploySpec, outcome: str, *, actor: str, error: str | None = None) -> None:
    """Record an outcome the deploy task could not (halted, expired, rejected, gave up)."""
    run_id = str(flow_run.id)
    if rollouts.record_started(spec, flow_run_id=run_id, actor=actor) in (None, "running"):
        rollouts.record_finished(spec, outcome, flow_run_id=run_id, actor=actor, error=error)
