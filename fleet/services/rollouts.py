"""Rollouts: turn a stored plan into per-instance deploy specs, and record
what happened to each instance (the flows' only way into the database).

A deploy spec carries everything one deploy task needs: the revision, the
manifest as the target receives it (versions with artifact url and sha256),
the target block name, and the last good manifest to go back to.

An approved spec deploys only while its approval holds: `stale_approvals`
checks it against the fleet as it is just before the deploy
(`fleet.core.approvals.stale_reasons`), and a stale one is recorded
`stale-approval`, its revision `superseded` (the next run plans again).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from packaging.version import Version
from sqlalchemy import Connection, Engine, bindparam, select

from fleet.core.advisories import Security
from fleet.core.approvals import ApprovedRevision, stale_reasons
from fleet.core.durations import isoformat
from fleet.core.errors import InputError, NotFoundError
from fleet.core.manifests import Manifest, ManifestStatus
from fleet.core.plan import Decision, InstancePlan, Plan, compile_plan
from fleet.core.state import FleetState
from fleet.core.versions import Registry
from fleet.db import fleet as fleet_repo
from fleet.db.audit import append_events
from fleet.db.history import MANIFEST
from fleet.services import deployments, locks, manifests, recovery
from fleet.services._common import now_or_clock, reading, writing
from fleet.services.recovery import Orphan

__all__ = [
    "DeploySpec",
    "PreparedRollout",
    "agent_manifest",
    "begin_in",
    "begin_many_in",
    "deployment_outcome",
    "prepare_rollout",
    "record_ended",
    "record_finished",
    "record_started",
    "running_revision",
    "stale_approvals",
]


@dataclass(frozen=True, slots=True)
class DeploySpec:
    """Everything one deploy task needs for one instance."""

    instance: str
    channel: str
    policy: str
    decision: str
    revision: int
    target: str | None
    manifest: Mapping[str, Any]
    approvals_required: int = 0
    approval_timeout_seconds: float = 0.0
    good_revision: int | None = None
    good_hash: str | None = None
    changes: tuple[tuple[str, str | None, str | None, str], ...] = ()
    rollback_of: int | None = None
    # Only verified approvals count on the instance's channel.
    verified_approvals: bool = False
    # It passed an approval gate: checked for a stale approval just before it deploys.
    approved: bool = False
    # An enforced fix: the approval is waived by security policy (this comment), which
    # the deploy records when it starts.
    waiver: str | None = None

    @property
    def manifest_hash(self) -> str:
        return str(self.manifest["manifest_hash"])


@dataclass(frozen=True, slots=True)
class PreparedRollout:
    plan: Plan
    specs: tuple[DeploySpec, ...] = ()
    stored: bool = True
    compiled_at: datetime | None = None
    errors: Mapping[str, str] = field(default_factory=dict)
    prepared_at: datetime = field(default_factory=lambda: datetime.now(UTC))


def agent_manifest(
    instance: str, revision: int, manifest: Manifest, registry: Registry
) -> dict[str, Any]:
    """The manifest as a target receives it: each version with its artifact.

    Raises `InputError` naming a version that has no artifact to deploy.
    """
    components: dict[str, Any] = {}
    for name, version in sorted(manifest.components.items()):
        cv = registry.find(name, version)
        if cv is None or not cv.artifact_url or not cv.sha256:
            raise InputError(
                f"{instance}: {name} {version} has no artifact (url and sha256) to deploy"
            )
        components[name] = {"version": str(version), "url": cv.artifact_url, "sha256": cv.sha256}
    return {
        "instance": instance,
        "revision": revision,
        "manifest_hash": manifest.hash,
        "components": components,
    }


# Reads every deploy makes, built once (building one costs more CPU than running it).
_CURRENT_REVISION = select(fleet_repo.INSTANCE.c.current_revision).where(
    fleet_repo.INSTANCE.c.name == bindparam("name")
)
_CURRENT_REVISIONS = select(
    fleet_repo.INSTANCE.c.name, fleet_repo.INSTANCE.c.current_revision
).where(fleet_repo.INSTANCE.c.name.in_(bindparam("names", expanding=True)))
_HASH_AT = select(MANIFEST.c.hash).where(
    (MANIFEST.c.instance == bindparam("instance")) & (MANIFEST.c.number == bindparam("number"))
)


def _good(session: Any, instance: str) -> tuple[int | None, str | None]:
    """The revision the instance runs now according to Fleet, and its hash."""
    row = session.execute(_CURRENT_REVISION, {"name": instance}).first()
    if row is None or row.current_revision is None:
        return None, None
    found = session.execute(
        _HASH_AT, {"instance": instance, "number": row.current_revision}
    ).first()
    return row.current_revision, None if found is None else found.hash


def _spec(
    item: InstancePlan,
    revision: int,
    state: FleetState,
    good: tuple[int | None, str | None],
) -> DeploySpec:
    manifest = item.manifest
    assert manifest is not None
    inst = next(i for i in state.instances if i.name == item.instance)
    channel = state.channels[inst.channel]
    return DeploySpec(
        instance=item.instance,
        channel=item.channel,
        policy=str(item.policy),
        decision=str(item.decision),
        revision=revision,
        target=inst.target,
        manifest=agent_manifest(item.instance, revision, manifest, state.registry),
        approvals_required=item.approvals_required,
        approval_timeout_seconds=channel.approval_timeout.total_seconds(),
        verified_approvals=channel.verified_approvals,
        good_revision=good[0],
        good_hash=good[1],
        changes=tuple(
            (
                c.component,
                None if c.from_version is None else str(c.from_version),
                None if c.to_version is None else str(c.to_version),
                c.reason,
            )
            for c in item.changes
        ),
    )


def prepare_rollout(
    *,
    actor: str,
    now: datetime | None = None,
    instances: Collection[str] | None = None,
    channels: Collection[str] | None = None,
    labels: Mapping[str, str] | None = None,
    flow_run_id: str | None = None,
    dry_run: bool = False,
    engine: Engine | None = None,
) -> PreparedRollout:
    """Compile the plan and (unless `dry_run`) store its revisions; one spec per
    instance to deploy or to ask approval for. `dry_run` writes nothing."""
    now = now_or_clock(now)
    with reading(engine) as session:
        state = fleet_repo.load_state(session)
    known = {i.name for i in state.instances}
    for name in instances or ():
        if name not in known:
            raise InputError(f"Unknown instance: {name!r}")
    for name in channels or ():
        if name not in state.channels:
            raise InputError(f"Unknown channel: {name!r}")
    if dry_run:
        plan = compile_plan(state, now, instances=instances, channels=channels, labels=labels)
        return PreparedRollout(plan, stored=False, compiled_at=now)
    stored = manifests.compile_and_store(
        actor=actor,
        now=now,
        instances=instances,
        channels=channels,
        labels=labels,
        flow_run_id=flow_run_id,
        engine=engine,
    )
    specs: list[DeploySpec] = []
    errors: dict[str, str] = {}
    with reading(engine) as session:
        for item in stored.plan.instances:
            number = stored.revisions.get(item.instance)
            if number is None or item.decision in (Decision.NOOP, Decision.SKIP_FROZEN):
                continue
            try:
                specs.append(_spec(item, number, state, _good(session, item.instance)))
            except InputError as exc:
                errors[item.instance] = str(exc)
    return PreparedRollout(stored.plan, tuple(specs), True, now, errors)


def rollback_spec(
    instance: str,
    revision: int,
    *,
    engine: Engine | None = None,
) -> DeploySpec:
    """The deploy spec of a stored rollback revision."""
    with reading(engine) as session:
        state = fleet_repo.load_state(session)
        row = session.execute(
            select(MANIFEST).where(
                (MANIFEST.c.instance == instance) & (MANIFEST.c.number == revision)
            )
        ).first()
        if row is None:
            raise NotFoundError(f"Unknown manifest revision: {instance!r} revision {revision}")
        good = _good(session, instance)
    inst = next(i for i in state.instances if i.name == instance)
    channel = state.channels[inst.channel]
    manifest = Manifest.from_json(row.components)
    base = dict(row.base or {})
    return DeploySpec(
        instance=instance,
        channel=inst.channel,
        policy=str(inst.policy_override or channel.policy),
        decision="rollback",
        revision=revision,
        target=inst.target,
        manifest=agent_manifest(instance, revision, manifest, state.registry),
        approvals_required=0,
        approval_timeout_seconds=channel.approval_timeout.total_seconds(),
        verified_approvals=channel.verified_approvals,
        good_revision=good[0],
        good_hash=good[1],
        changes=tuple(
            (c, base.get(c), v, f"rollback to revision {row.rollback_of}")
            for c, v in sorted(manifest.to_json().items())
            if base.get(c) != v
        ),
        rollback_of=row.rollback_of,
    )


@dataclass(frozen=True, slots=True)
class UnderLock:
    """What a deploy reads once it holds its instance's lock, in one transaction."""

    outcome: str | None  # this run's recorded outcome there (`deployment_outcome`)
    orphans: list[Orphan]  # what dead runs left open there (`recovery.orphans`)
    running: int | None  # the revision Fleet records as running (`running_revision`)
    # The deployment record was opened in the same transaction (`begin_in`).
    started: bool = False


def under_lock(
    instance: str, flow_run_id: str, *, now: datetime | None = None, engine: Engine | None = None
) -> UnderLock:
    """`deployment_outcome`, `recovery.orphans` (of other runs) and
    `running_revision` of one instance, read together: three reads per deploy
    made one transaction."""
    with reading(engine) as session:
        return _under_lock_in(session, [instance], flow_run_id, now=now_or_clock(now))[instance]


def _under_lock_in(
    session: Connection, instances: list[str], flow_run_id: str, *, now: datetime
) -> dict[str, UnderLock]:
    """`under_lock` of each of `instances`, in three reads whatever their number."""
    outcomes = deployments.outcomes_in(session, instances, flow_run_id)
    orphans: dict[str, list[Orphan]] = {}
    left = recovery.orphans_in(session, instances=instances, except_run=flow_run_id, now=now)
    for orphan in left:
        orphans.setdefault(orphan.instance, []).append(orphan)
    found = session.execute(_CURRENT_REVISIONS, {"names": instances})
    running = {row.name: row.current_revision for row in found}
    return {
        name: UnderLock(outcomes.get(name), orphans.get(name, []), running.get(name))
        for name in instances
    }


def begin_in(
    session: Connection, spec: DeploySpec, *, flow_run_id: str, actor: str, start: bool
) -> UnderLock:
    """`under_lock`, read in the transaction that takes the instance's lock
    (`LockKeeper.hold(then=...)`), and, when `start` and nothing stands in the
    way, `record_started` in it too: a deploy's first three transactions made one.

    What stands in the way is what the deploy must look at before it starts:
    a record of this run there already, what a dead run left open, or the
    revision already running.
    """
    starting = {spec.instance} if start else set()
    return begin_many_in(session, [spec], flow_run_id=flow_run_id, actor=actor, starting=starting)[
        spec.instance
    ]


def begin_many_in(
    session: Connection,
    specs: Sequence[DeploySpec],
    *,
    flow_run_id: str,
    actor: str,
    starting: Collection[str],
) -> dict[str, UnderLock]:
    """`begin_in` of a chunk's specs at once (`LockKeeper.hold_many(then=...)`),
    the instances named in `starting` started where nothing stands in the way:
    the same reads and records in a few statements whatever the chunk's size."""
    now = now_or_clock(None)
    seen = _under_lock_in(session, [s.instance for s in specs], flow_run_id, now=now)
    ready = [
        spec
        for spec in specs
        if spec.instance in starting
        and seen[spec.instance].outcome is None
        and not seen[spec.instance].orphans
        and seen[spec.instance].running != spec.revision
    ]
    if ready:
        entries = deployments.start_many_in(
            session,
            [(spec.instance, spec.revision) for spec in ready],
            flow_run_id=flow_run_id,
            actor=actor,
            now=now,
            unrecorded=True,  # `seen` says none has a record, read in this transaction
        )
        append_events(session, entries, actor=actor, at=now, flow_run_id=flow_run_id)
        for spec in ready:
            seen[spec.instance] = replace(seen[spec.instance], outcome="running", started=True)
    return seen


def running_revision(instance: str, *, engine: Engine | None = None) -> int | None:
    """The revision Fleet records as running on `instance` (None: none deployed)."""
    with reading(engine) as session:
        return _good(session, instance)[0]


def deployment_outcome(
    instance: str, flow_run_id: str, *, engine: Engine | None = None
) -> str | None:
    """The recorded outcome of this run on this instance (`running` while under
    way), or None when the run has not started on it."""
    with reading(engine) as session:
        return deployments.outcome_in(session, instance, flow_run_id)


def record_started(
    spec: DeploySpec, *, flow_run_id: str, actor: str, engine: Engine | None = None
) -> str | None:
    """Open the deployment record, once per run and instance.

    Returns None when it was opened now, else the outcome already recorded
    (`running` when a resumed or retried run comes back to the instance).
    """
    now = now_or_clock(None)
    with writing(engine) as session:
        recorded = deployments.outcome_in(session, spec.instance, flow_run_id)
        if recorded is not None:
            return recorded
        entries = deployments.start_in(
            session, spec.instance, spec.revision, flow_run_id=flow_run_id, actor=actor, now=now
        )
        append_events(session, entries, actor=actor, at=now, flow_run_id=flow_run_id)
    return None


_STATUS_OF_OUTCOME = {
    "succeeded": ManifestStatus.DEPLOYED,
    "failed": ManifestStatus.FAILED,
    "rolled-back": ManifestStatus.FAILED,
    # Never deployed, and never to be: the next run plans the instance again.
    "stale-approval": ManifestStatus.SUPERSEDED,
}


def record_finished(
    spec: DeploySpec,
    outcome: str,
    *,
    flow_run_id: str,
    actor: str,
    error: str | None = None,
    release: bool = False,
    engine: Engine | None = None,
) -> None:
    """Close the deployment record and move the revision's status, in one transaction.

    `succeeded` makes the revision the running one; `failed` and
    `rolled-back` mark it failed (the instance keeps, or went back to, its
    last good manifest); `stale-approval` marks it superseded (it is not
    reused); `halted`, `expired`, `skipped` leave it as it is. With
    `release`, the run's lock on the instance goes in the same transaction:
    it is held exactly until the record is written.
    """
    record_ended(
        [(spec, outcome, error)],
        flow_run_id=flow_run_id,
        actor=actor,
        release=release,
        engine=engine,
    )


def record_ended(
    ends: Sequence[tuple[DeploySpec, str, str | None]],
    *,
    flow_run_id: str,
    actor: str,
    release: bool = False,
    engine: Engine | None = None,
) -> None:
    """`record_finished` of several deploys, each (spec, outcome, error), in one
    transaction: all are recorded, or none (the error names the first refused)."""
    if not ends:
        return
    now = now_or_clock(None)
    with writing(engine) as session:
        if release:
            locks.release_many_in(session, [spec.instance for spec, _, _ in ends], run=flow_run_id)
        marks = [
            (spec.instance, spec.revision, _STATUS_OF_OUTCOME[outcome], error)
            for spec, outcome, error in ends
            if outcome in _STATUS_OF_OUTCOME
        ]
        marked = dict(
            zip([m[0] for m in marks], manifests.mark_many_in(session, marks, now=now), strict=True)
        )
        closed = deployments.finish_many_in(
            session,
            [(spec.instance, outcome, error) for spec, outcome, error in ends],
            flow_run_id=flow_run_id,
            now=now,
        )
        entries = [
            entry
            for (spec, _, _), close in zip(ends, closed, strict=True)
            for entry in (*marked.get(spec.instance, []), close)
        ]
        append_events(session, entries, actor=actor, at=now, flow_run_id=flow_run_id)


def stale_approvals(
    specs: Collection[DeploySpec],
    *,
    flow_run_id: str,
    now: datetime | None = None,
    engine: Engine | None = None,
) -> dict[str, str]:
    """Instance -> why its approval went stale, for approved specs about to deploy.

    Call it with the instances' locks held. Specs this run has already
    finished (a run that re-executes) are left to their deploy task, which
    reports what was recorded.
    """
    now = now_or_clock(now)
    out: dict[str, str] = {}
    with reading(engine) as session:
        state = fleet_repo.load_state(session)
        instances = {i.name: i for i in state.instances}
        security = Security(
            state.advisories, state.risk_acceptances, now=now, deadlines=state.deadlines
        )
        for spec in specs:
            if deployments.outcome_in(session, spec.instance, flow_run_id) not in (None, "running"):
                continue
            row = session.execute(
                select(MANIFEST).where(
                    (MANIFEST.c.instance == spec.instance) & (MANIFEST.c.number == spec.revision)
                )
            ).first()
            inst = instances.get(spec.instance)
            if row is None or inst is None:
                out[spec.instance] = f"stale approval: {spec.instance} r{spec.revision} is gone"
                continue
            approved = ApprovedRevision(
                instance=spec.instance,
                channel=inst.channel,
                revision=spec.revision,
                components=Manifest.from_json(row.components).components,
                base={c: Version(v) for c, v in (row.base or {}).items()},
                rollback=row.rollback_of is not None,
            )
            reasons = stale_reasons(
                approved,
                running=inst.current,
                registry=state.registry,
                pins=state.pins,
                security=security,
            )
            if reasons:
                out[spec.instance] = "stale approval: " + "; ".join(reasons)
    return out


def describe(spec: DeploySpec) -> str:
    """`api 2.4.2 -> 2.5.0, worker 2.4.1 -> 2.5.0` for names and summaries."""
    return ", ".join(f"{c} {a or '(none)'} -> {b or '(none)'}" for c, a, b, _ in spec.changes)


def when(moment: datetime | None) -> str:
    return "" if moment is None else isoformat(moment)
