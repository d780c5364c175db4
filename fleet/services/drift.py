"""What Fleet recorded each instance runs, what the drift check found, and the repair
revision that redeploys it.

The drift check's findings are kept per instance (`record_check`): a row
while an instance runs something else than Fleet recorded, gone once a check
finds it in sync again; each change is audited (`instance.drift`,
`instance.drift-resolved`). `drifted()` reads them: a finding older than the
instance's last deploy no longer counts (that deploy put the recorded
manifest back, or the next check will say otherwise).

A repair stores a new revision with the recorded manifest (decision
`repair`, parent the running revision): history only moves forward, and the
revision it replaces becomes `superseded`, not `rolled-back`, because it was
good all along.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, delete, insert, select, update

from fleet.core.drift import Drift
from fleet.core.errors import ConflictError, NotFoundError
from fleet.core.manifests import ManifestStatus
from fleet.db import fleet as fleet_repo
from fleet.db.audit import Entry, append_events
from fleet.db.history import DEPLOYMENT, MANIFEST
from fleet.db.models import DriftRow, table_of
from fleet.services import recovery
from fleet.services._common import now_or_clock, reading, writing

__all__ = [
    "DriftFinding",
    "Recorded",
    "drifted",
    "in_motion",
    "record_check",
    "recorded_manifests",
    "store_repair",
]

DRIFT = table_of(DriftRow)


@dataclass(frozen=True, slots=True)
class Recorded:
    """The manifest Fleet recorded as running on an instance (None: never deployed)."""

    instance: str
    target: str | None
    revision: int | None
    hash: str | None
    versions: Mapping[str, str] = field(default_factory=dict)


def recorded_manifests(
    instances: Collection[str] | None = None, *, engine: Engine | None = None
) -> list[Recorded]:
    """Per live instance (in fleet order), the revision it runs according to Fleet."""
    with reading(engine) as session:
        state = fleet_repo.load_state(session)
        rows = {
            r.name: r.current_revision
            for r in session.execute(
                select(fleet_repo.INSTANCE.c.name, fleet_repo.INSTANCE.c.current_revision)
            )
        }
        hashes = {
            (r.instance, r.number): r.hash
            for r in session.execute(
                select(MANIFEST.c.instance, MANIFEST.c.number, MANIFEST.c.hash).where(
                    MANIFEST.c.status == ManifestStatus.DEPLOYED.value
                )
            )
        }
    out = []
    for inst in state.instances:
        if instances and inst.name not in instances:
            continue
        number = rows.get(inst.name)
        out.append(
            Recorded(
                inst.name,
                inst.target,
                number,
                None if number is None else hashes.get((inst.name, number)),
                {c: str(v) for c, v in sorted(inst.current.items())},
            )
        )
    return out


def in_motion(checked: Collection[Recorded], *, engine: Engine | None = None) -> dict[str, str]:
    """Of instances whose targets were read against `checked` (what Fleet recorded
    before), those whose record is moving: instance -> why. A deploy under way
    (an open deployment record its run's live lease covers) applies before it
    records, and a chunk records its successes when it ends; a deploy recorded
    since the read changed what it is judged against; a dead run's open record
    (an orphan) waits for recovery to read the target and record what runs. What
    they run cannot be judged now: the next check sees them settled."""
    names = sorted({r.instance for r in checked})
    if not names:
        return {}
    now = now_or_clock(None)
    with reading(engine) as session:
        open_ = {
            r.instance: r.flow_run_id
            for r in session.execute(
                select(DEPLOYMENT.c.instance, DEPLOYMENT.c.flow_run_id).where(
                    DEPLOYMENT.c.instance.in_(names) & DEPLOYMENT.c.finished_at.is_(None)
                )
            )
        }
        # Recovery's rule says which open records no live lease covers.
        orphaned = {
            (o.instance, o.flow_run_id)
            for o in recovery.orphans_in(session, instances=sorted(open_), now=now)
        }
        current = {
            r.name: r.current_revision
            for r in session.execute(
                select(fleet_repo.INSTANCE.c.name, fleet_repo.INSTANCE.c.current_revision).where(
                    fleet_repo.INSTANCE.c.name.in_(names)
                )
            )
        }
    out = {}
    for rec in checked:
        run = open_.get(rec.instance)
        if run is not None and (rec.instance, run) not in orphaned:
            out[rec.instance] = f"being deployed by run {run}"
        elif run is not None:
            out[rec.instance] = f"left open by run {run}, which stopped: recovery settles it"
        elif current.get(rec.instance) != rec.revision:
            out[rec.instance] = f"revision {current.get(rec.instance)} recorded meanwhile"
    return out


def store_repair(
    instance: str,
    *,
    actor: str,
    reason: str,
    now: datetime | None = None,
    flow_run_id: str | None = None,
    engine: Engine | None = None,
) -> int:
    """Store the running revision again as a new one to redeploy; returns its number."""
    now = now_or_clock(now)
    with writing(engine) as session:
        inst = session.execute(
            select(fleet_repo.INSTANCE).where(fleet_repo.INSTANCE.c.name == instance)
        ).first()
        if inst is None:
            raise NotFoundError(f"Unknown instance: {instance!r}")
        if inst.current_revision is None:
            raise ConflictError(f"{instance} has no deployed revision to repair")
        running = session.execute(
            select(MANIFEST).where(
                (MANIFEST.c.instance == instance) & (MANIFEST.c.number == inst.current_revision)
            )
        ).one()
        newest = max(
            session.execute(select(MANIFEST.c.number).where(MANIFEST.c.instance == instance))
            .scalars()
            .all()
        )
        number: int = newest + 1
        session.execute(
            insert(MANIFEST),
            [
                {
                    "instance": instance,
                    "number": number,
                    "components": dict(running.components),
                    "base": dict(inst.current or {}),
                    "hash": running.hash,
                    "parent": running.number,
                    "rollback_of": None,
                    "status": ManifestStatus.COMPILED.value,
                    "decision": "repair",
                    "explanation": {
                        c: f"redeploy revision {running.number}: {reason}"
                        for c in dict(running.components)
                    },
                    "warnings": [],
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
                    "manifest.repair",
                    f"instance:{instance}",
                    {"revision": number, "of": running.number, "reason": reason},
                )
            ],
            actor=actor,
            at=now,
            flow_run_id=flow_run_id,
        )
        return number


@dataclass(frozen=True, slots=True)
class DriftFinding:
    """An instance found running something else than Fleet recorded."""

    instance: str
    observed_at: datetime
    flow_run_id: str | None
    revision: int | None
    differences: tuple[tuple[str, str | None, str | None], ...]
    summary: str

    @property
    def components(self) -> frozenset[str]:
        return frozenset(c for c, _, _ in self.differences)


def record_check(
    checked: Collection[str],
    found: Collection[Drift],
    *,
    actor: str,
    flow_run_id: str | None = None,
    now: datetime | None = None,
    engine: Engine | None = None,
) -> None:
    """Keep what one drift check found: `found` among the `checked` instances (an
    unreachable instance is not `checked`: what was known of it stays)."""
    now = now_or_clock(now)
    by_name = {d.instance: d for d in found if d.drifted}
    names = set(checked) | set(by_name)
    with writing(engine) as session:
        known = {
            r.instance: r
            for r in session.execute(select(DRIFT).where(DRIFT.c.instance.in_(sorted(names))))
        }
        entries: list[Entry] = []
        for name in sorted(names):
            drift, row = by_name.get(name), known.get(name)
            if drift is None:
                if row is not None:
                    session.execute(delete(DRIFT).where(DRIFT.c.id == row.id))
                    entries.append(
                        Entry("instance.drift-resolved", f"instance:{name}", {"was": row.summary})
                    )
                continue
            values = {
                "observed_at": now,
                "flow_run_id": flow_run_id,
                "revision": drift.revision,
                "differences": [list(d) for d in drift.differences],
                "summary": drift.describe(),
            }
            if row is None:
                session.execute(insert(DRIFT), [{"instance": name, **values}])
            else:
                session.execute(update(DRIFT).where(DRIFT.c.id == row.id).values(**values))
            if row is None or row.summary != values["summary"]:
                entries.append(
                    Entry(
                        "instance.drift",
                        f"instance:{name}",
                        {"revision": drift.revision, "drift": values["summary"]},
                    )
                )
        append_events(session, entries, actor=actor, at=now, flow_run_id=flow_run_id)


def drifted(*, engine: Engine | None = None) -> dict[str, DriftFinding]:
    """The instances whose last drift check found drift, unless deployed since."""
    with reading(engine) as session:
        rows = session.execute(select(DRIFT)).all()
        deployed = {
            r.instance: r.deployed_at
            for r in session.execute(
                select(MANIFEST.c.instance, MANIFEST.c.deployed_at)
                .join(
                    fleet_repo.INSTANCE,
                    (fleet_repo.INSTANCE.c.name == MANIFEST.c.instance)
                    & (fleet_repo.INSTANCE.c.current_revision == MANIFEST.c.number),
                )
                .where(MANIFEST.c.instance.in_([r.instance for r in rows]))
            )
        }
    out = {}
    for r in rows:
        since = deployed.get(r.instance)
        if since is not None and since > r.observed_at:
            continue
        out[r.instance] = DriftFinding(
            r.instance,
            r.observed_at,
            r.flow_run_id,
            r.revision,
            tuple((str(d[0]), d[1], d[2]) for d in r.differences),
            r.summary,
        )
    return out
