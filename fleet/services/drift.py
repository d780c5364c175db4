"""What Fleet recorded each instance runs, and the repair revision that redeploys it.

A repair stores a new revision with the recorded manifest (decision
`repair`, parent the running revision): history only moves forward, and the
revision it replaces becomes `superseded`, not `rolled-back`, because it was
good all along.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, insert, select

from fleet.core.errors import ConflictError, NotFoundError
from fleet.core.manifests import ManifestStatus
from fleet.db import fleet as fleet_repo
from fleet.db.audit import Entry, append_events
from fleet.db.history import MANIFEST
from fleet.services._common import now_or_clock, reading, writing

__all__ = ["Recorded", "recorded_manifests", "store_repair"]


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
