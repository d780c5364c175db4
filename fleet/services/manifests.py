"""Manifest revisions: compile and store a plan, move a revision's status, roll back.

Revisions are numbered per instance (1, 2, 3 ...) and never deleted. A plan
stores a revision only for instances it would change (decisions `deploy`,
`needs-approval`, `enforce-security`); when the newest revision is still
pending (compiled or approved) with the same content, planned from the same
running versions, it is reused instead of stored again, so planning twice
before a deploy does not pile up copies.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, insert, select, tuple_, update

from fleet.core.durations import isoformat
from fleet.core.errors import ConflictError, InputError, NotFoundError
from fleet.core.manifests import ManifestStatus, Revision
from fleet.core.pins import applicable_pins
from fleet.core.plan import Decision, InstancePlan, Plan, compile_plan
from fleet.core.rollback import RollbackPlan, RollbackTarget, choose_rollback
from fleet.db import fleet as fleet_repo
from fleet.db.audit import Entry, append_events
from fleet.db.bulk import bulk_insert
from fleet.db.history import (
    DEPLOYMENT,
    MANIFEST,
    MANIFEST_AT,
    latest_revisions,
    load_revisions,
    manifest_rows,
    revision_of,
)
from fleet.services._common import now_or_clock, reading, writing

__all__ = [
    "HistoryEntry",
    "StoredPlan",
    "StoredRollback",
    "compile_and_store",
    "history",
    "mark_in",
    "mark_manifest",
    "mark_many_in",
    "rollback",
]

_STORED = (Decision.DEPLOY, Decision.NEEDS_APPROVAL, Decision.ENFORCE_SECURITY)
_PENDING = (ManifestStatus.COMPILED.value, ManifestStatus.APPROVED.value)
# Which status a revision may move to from which.
_MOVES: Mapping[ManifestStatus, tuple[ManifestStatus, ...]] = {
    ManifestStatus.COMPILED: (
        ManifestStatus.APPROVED,
        ManifestStatus.DEPLOYED,
        ManifestStatus.FAILED,
        ManifestStatus.SUPERSEDED,
    ),
    ManifestStatus.APPROVED: (
        ManifestStatus.DEPLOYED,
        ManifestStatus.FAILED,
        ManifestStatus.SUPERSEDED,
    ),
    ManifestStatus.DEPLOYED: (
        ManifestStatus.FAILED,
        ManifestStatus.ROLLED_BACK,
        ManifestStatus.SUPERSEDED,
    ),
    ManifestStatus.FAILED: (ManifestStatus.ROLLED_BACK,),
    ManifestStatus.ROLLED_BACK: (),
    ManifestStatus.SUPERSEDED: (),
}


@dataclass(frozen=True, slots=True)
class StoredPlan:
    """The plan, and per instance the revision that holds its manifest."""

    plan: Plan
    revisions: Mapping[str, int] = field(default_factory=dict)
    new: tuple[str, ...] = ()


def _explanation(item: InstancePlan) -> dict[str, str]:
    return {c.component: c.reason for c in item.components}


def compile_and_store(
    *,
    actor: str,
    now: datetime | None = None,
    instances: Collection[str] | None = None,
    channels: Collection[str] | None = None,
    labels: Mapping[str, str] | None = None,
    flow_run_id: str | None = None,
    engine: Engine | None = None,
) -> StoredPlan:
    """Compile the plan from the database and store a revision per instance it changes."""
    now = now_or_clock(now)
    with writing(engine) as session:
        state = fleet_repo.load_state(session)
        plan = compile_plan(state, now, instances=instances, channels=channels, labels=labels)
        latest = latest_revisions(session)
        deployed = _deployed_numbers(session)
        revisions: dict[str, int] = {}
        new: list[str] = []
        rows: list[dict[str, Any]] = []
        entries: list[Entry] = []
        for item in plan.instances:
            manifest = item.manifest
            if item.decision not in _STORED or manifest is None:
                continue
            last = latest.get(item.instance)
            base = {c.component: str(c.from_version) for c in item.components if c.from_version}
            if (
                last is not None
                and last.status in _PENDING
                and last.hash == manifest.hash
                and dict(last.base or {}) == base
            ):
                revisions[item.instance] = last.number
                continue
            number = 1 if last is None else last.number + 1
            parent = deployed.get(item.instance)
            rows.append(
                {
                    "instance": item.instance,
                    "number": number,
                    "components": manifest.to_json(),
                    "base": base,
                    "hash": manifest.hash,
                    "parent": parent,
                    "rollback_of": None,
                    "status": ManifestStatus.COMPILED.value,
                    "decision": item.decision.value,
                    "explanation": _explanation(item),
                    "warnings": list(item.warnings),
                    "created_at": now,
                    "created_by": actor,
                    "flow_run_id": flow_run_id,
                    "status_at": now,
                    "deployed_at": None,
                }
            )
            entries.append(
                Entry(
                    "manifest.compile",
                    f"instance:{item.instance}",
                    {
                        "revision": number,
                        "parent": parent,
                        "hash": manifest.hash,
                        "decision": item.decision.value,
                        "changes": {c.component: c.to_json() for c in item.changes},
                    },
                )
            )
            revisions[item.instance] = number
            new.append(item.instance)
        bulk_insert(session, MANIFEST, rows)
        append_events(session, entries, actor=actor, at=now, flow_run_id=flow_run_id)
        return StoredPlan(plan, revisions, tuple(new))


def _deployed_numbers(session: Connection) -> dict[str, int]:
    query = select(fleet_repo.INSTANCE.c.name, fleet_repo.INSTANCE.c.current_revision).where(
        fleet_repo.INSTANCE.c.current_revision.is_not(None)
    )
    return {row.name: row.current_revision for row in session.execute(query)}


# Statements every deploy's record runs, built once (building one costs more CPU
# than running it); each sets the columns its parameters name (`row` is the id).
_SET_MANIFEST = update(MANIFEST).where(MANIFEST.c.id == bindparam("row"))
_MANIFESTS_AT = select(MANIFEST).where(
    tuple_(MANIFEST.c.instance, MANIFEST.c.number).in_(bindparam("pairs", expanding=True))
)
_INSTANCES_NAMED = select(fleet_repo.INSTANCE).where(
    fleet_repo.INSTANCE.c.name.in_(bindparam("names", expanding=True))
)
_SET_CURRENT = update(fleet_repo.INSTANCE).where(fleet_repo.INSTANCE.c.id == bindparam("row"))


def _manifest_rows(
    session: Connection, pairs: Sequence[tuple[str, int]]
) -> dict[tuple[str, int], Any]:
    """The manifest rows of (instance, number) pairs, in one read; missing ones left out."""
    if not pairs:
        return {}
    found = session.execute(_MANIFESTS_AT, {"pairs": list(pairs)})
    return {(r.instance, r.number): r for r in found}


def _manifest_row(session: Connection, instance: str, number: int) -> Any:
    row = session.execute(MANIFEST_AT, {"instance": instance, "number": number}).first()
    if row is None:
        raise NotFoundError(f"Unknown manifest revision: {instance!r} revision {number}")
    return row


def mark_manifest(
    instance: str,
    number: int,
    status: ManifestStatus | str,
    *,
    actor: str,
    now: datetime | None = None,
    flow_run_id: str | None = None,
    reason: str | None = None,
    engine: Engine | None = None,
) -> None:
    """Move revision `number` of `instance` to `status`.

    `deployed` makes it the instance's running manifest: the instance's
    current versions become the manifest's, and the revision that ran before
    becomes `superseded` (`rolled-back` when the new one is a rollback of an
    earlier revision).
    """
    now = now_or_clock(now)
    with writing(engine) as session:
        entries = mark_in(session, instance, number, status, now=now, reason=reason)
        append_events(session, entries, actor=actor, at=now, flow_run_id=flow_run_id)


def mark_in(
    session: Connection,
    instance: str,
    number: int,
    status: ManifestStatus | str,
    *,
    now: datetime,
    reason: str | None = None,
) -> list[Entry]:
    """`mark_manifest` inside the caller's transaction; returns the audit entries to append."""
    return mark_many_in(session, [(instance, number, status, reason)], now=now)[0]


def mark_many_in(
    session: Connection,
    marks: Sequence[tuple[str, int, ManifestStatus | str, str | None]],
    *,
    now: datetime,
) -> list[list[Entry]]:
    """`mark_in` of several revisions, each (instance, number, status, reason), of
    distinct instances: a few statements whatever their number. Each one's audit
    entries, in their order; nothing is changed when one move is refused."""
    moves = []
    for instance, number, status, reason in marks:
        try:
            moves.append((instance, number, ManifestStatus(status), reason))
        except ValueError:
            raise InputError(
                f"Invalid manifest status: {status!r} (expected one of "
                f"{', '.join(s.value for s in ManifestStatus)})"
            ) from None
    if len({instance for instance, *_ in moves}) != len(moves):
        raise ConflictError("Two status changes of one instance's revisions at once")
    rows = _manifest_rows(session, [(instance, number) for instance, number, *_ in moves])
    deploying = [instance for instance, _, target, _ in moves if target is ManifestStatus.DEPLOYED]
    insts = (
        {r.name: r for r in session.execute(_INSTANCES_NAMED, {"names": deploying})}
        if deploying
        else {}
    )
    previous = [
        (name, inst.current_revision)
        for name, inst in insts.items()
        if inst.current_revision is not None
    ]
    olds = _manifest_rows(session, previous) if previous else {}
    out: list[list[Entry]] = []
    set_manifests: dict[frozenset[str], list[dict[str, Any]]] = {}
    set_current: list[dict[str, Any]] = []
    for instance, number, target, reason in moves:
        row = rows.get((instance, number))
        if row is None:
            raise NotFoundError(f"Unknown manifest revision: {instance!r} revision {number}")
        before = ManifestStatus(row.status)
        if target not in _MOVES[before]:
            raise ConflictError(
                f"{instance} revision {number} is {before.value}: it cannot become {target.value}"
            )
        values: dict[str, Any] = {"row": row.id, "status": target.value, "status_at": now}
        details: dict[str, Any] = {"revision": number, "from": before.value, "reason": reason}
        entries = [Entry(f"manifest.{target.value}", f"instance:{instance}", details)]
        if target is ManifestStatus.DEPLOYED:
            values["deployed_at"] = now
            inst = insts.get(instance)
            if inst is None:
                raise NotFoundError(f"Unknown instance: {instance!r}")
            prior = inst.current_revision
            old = olds.get((instance, prior)) if prior is not None and prior != number else None
            if old is not None and old.status == ManifestStatus.DEPLOYED.value:
                replaced = (
                    ManifestStatus.ROLLED_BACK
                    if row.rollback_of is not None
                    else ManifestStatus.SUPERSEDED
                )
                changed = {"row": old.id, "status": replaced.value, "status_at": now}
                set_manifests.setdefault(frozenset(changed), []).append(changed)
                entries.append(
                    Entry(
                        f"manifest.{replaced.value}",
                        f"instance:{instance}",
                        {"revision": prior, "from": old.status, "by_revision": number},
                    )
                )
            elif prior is not None and prior != number and old is None:
                raise NotFoundError(f"Unknown manifest revision: {instance!r} revision {prior}")
            set_current.append(
                {"row": inst.id, "current": dict(row.components), "current_revision": number}
            )
            details["from_versions"] = inst.current
            details["to_versions"] = row.components
        set_manifests.setdefault(frozenset(values), []).append(values)
        out.append(entries)
    if set_current:
        session.execute(_SET_CURRENT, set_current)
    for changes in set_manifests.values():
        session.execute(_SET_MANIFEST, changes)
    return out


@dataclass(frozen=True, slots=True)
class StoredRollback:
    plan: RollbackPlan
    number: int


def rollback(
    instance: str,
    target: RollbackTarget | str = "previous",
    *,
    actor: str,
    now: datetime | None = None,
    flow_run_id: str | None = None,
    engine: Engine | None = None,
) -> StoredRollback:
    """Choose the rollback target (core rules) and store it as a new revision."""
    now = now_or_clock(now)
    if isinstance(target, str):
        target = RollbackTarget.parse(target)
    with writing(engine) as session:
        state = fleet_repo.load_state(session)
        found = next((i for i in state.instances if i.name == instance), None)
        if found is None:
            raise NotFoundError(f"Unknown instance: {instance!r}")
        history = load_revisions(session, instance=instance)
        active, _ = applicable_pins(state.pins, instance=instance, channel=found.channel, now=now)
        chosen = choose_rollback(
            instance,
            history,
            target,
            now=now,
            advisories=state.advisories,
            risk_acceptances=state.risk_acceptances,
            pins=active,
            deadlines=state.deadlines,
        )
        deployed = _deployed_numbers(session).get(instance)
        manifest = chosen.target.manifest
        session.execute(
            insert(MANIFEST),
            [
                {
                    "instance": instance,
                    "number": chosen.number,
                    "components": manifest.to_json(),
                    "base": {c: str(v) for c, v in sorted(found.current.items())},
                    "hash": manifest.hash,
                    "parent": deployed,
                    "rollback_of": chosen.rollback_of,
                    "status": ManifestStatus.COMPILED.value,
                    "decision": "rollback",
                    "explanation": {
                        c: f"rollback to revision {chosen.rollback_of} ({target})"
                        for c in manifest.components
                    },
                    "warnings": list(chosen.warnings),
                    "created_at": now,
                    "created_by": actor,
                    "flow_run_id": flow_run_id,
                    "status_at": now,
                    "deployed_at": None,
                }
            ],
        )
        append_events(
            session,
            [
                Entry(
                    "manifest.rollback",
                    f"instance:{instance}",
                    {
                        "revision": chosen.number,
                        "rollback_of": chosen.rollback_of,
                        "target": str(target),
                        "hash": manifest.hash,
                        "warnings": list(chosen.warnings),
                    },
                )
            ],
            actor=actor,
            at=now,
            flow_run_id=flow_run_id,
        )
        return StoredRollback(chosen, chosen.number)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One revision as `fleet history` shows it."""

    revision: Revision
    hash: str
    decision: str | None
    created_by: str
    flow_run_id: str | None
    status_at: datetime
    changes: Mapping[str, tuple[str | None, str | None]]
    warnings: tuple[str, ...] = ()
    # The runs that deployed (or tried to deploy) this revision: (flow run id, outcome).
    deployments: tuple[tuple[str, str], ...] = ()

    @property
    def deployed_by_run(self) -> str | None:
        """The run whose deploy of this revision succeeded (not the run that planned it)."""
        return next((run for run, outcome in self.deployments if outcome == "succeeded"), None)

    def to_json(self) -> dict[str, Any]:
        r = self.revision
        return {
            "revision": r.number,
            "status": r.status.value,
            "hash": self.hash,
            "parent": r.parent,
            "rollback_of": r.rollback_of,
            "decision": self.decision,
            "created_at": isoformat(r.created_at),
            "created_by": self.created_by,
            "status_at": isoformat(self.status_at),
            "deployed_at": None if r.deployed_at is None else isoformat(r.deployed_at),
            "flow_run_id": self.flow_run_id,
            "planned_by_run": self.flow_run_id,
            "deployed_by_run": self.deployed_by_run,
            "deployments": [{"flow_run_id": run, "outcome": o} for run, o in self.deployments],
            "manifest": r.manifest.to_json(),
            "changes": {c: {"from": a, "to": b} for c, (a, b) in self.changes.items()},
            "explanation": dict(r.explanation),
            "warnings": list(self.warnings),
        }


def history(instance: str, *, engine: Engine | None = None) -> list[HistoryEntry]:
    """Every revision of `instance`, oldest first, with from -> to (what it ran when planned)."""

    with reading(engine) as session:
        known = session.execute(
            select(fleet_repo.INSTANCE.c.id).where(fleet_repo.INSTANCE.c.name == instance)
        ).first()
        if known is None:
            raise NotFoundError(f"Unknown instance: {instance!r}")
        rows = manifest_rows(session, instance=instance)
        runs: dict[int, list[tuple[str, str]]] = {}
        for record in session.execute(
            select(DEPLOYMENT.c.manifest_number, DEPLOYMENT.c.flow_run_id, DEPLOYMENT.c.outcome)
            .where(DEPLOYMENT.c.instance == instance)
            .order_by(DEPLOYMENT.c.id)
        ):
            runs.setdefault(record.manifest_number, []).append((record.flow_run_id, record.outcome))
    out = []
    for row in rows:
        revision = revision_of(row)
        before = dict(row.base or {})
        after = revision.manifest.to_json()
        changes = {
            c: (before.get(c), after.get(c))
            for c in sorted(set(before) | set(after))
            if before.get(c) != after.get(c)
        }
        out.append(
            HistoryEntry(
                revision,
                row.hash,
                row.decision,
                row.created_by,
                row.flow_run_id,
                row.status_at,
                changes,
                tuple(row.warnings or ()),
                tuple(runs.get(revision.number, ())),
            )
        )
    return out
