"""Recovery: what a run left behind when it died, set right.

A deploy opens its deployment record while it holds its instance's lock and
closes it before letting go. So a record that is still open while no live
lease of its run covers its instance is an *orphan*: the process that opened
it is gone (killed, its machine lost, or cut off for longer than the lease).

Recovery closes an orphan as `interrupted` and then looks at what the
instance's target reports (the drift check's read): when the target runs the
revision the dead run was deploying, Fleet records that revision as the one
running, so that Fleet's record of what runs is true again and the next plan
starts from it. Everything it does is audited under `actor` (the recovering
run), naming the run it recovers.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, bindparam, select

from fleet.core.durations import isoformat
from fleet.core.errors import ConflictError
from fleet.core.locks import holds
from fleet.core.manifests import ManifestStatus
from fleet.db import fleet as fleet_repo
from fleet.db.audit import Entry, append_events
from fleet.db.history import DEPLOYMENT, MANIFEST
from fleet.services import deployments, manifests
from fleet.services._common import now_or_clock, reading, writing
from fleet.services.locks import LOCK, lease_of

__all__ = ["Orphan", "Settled", "close_orphan", "orphans", "settle"]


@dataclass(frozen=True, slots=True)
class Orphan:
    """An open deployment record whose run holds no live lock on its instance."""

    instance: str
    revision: int
    flow_run_id: str
    started_at: datetime
    hash: str

    def describe(self) -> str:
        return (
            f"{self.instance} r{self.revision}: run {self.flow_run_id} started deploying "
            f"at {isoformat(self.started_at)} and stopped without a word"
        )


@dataclass(frozen=True, slots=True)
class Settled:
    """What recovery found an orphan's instance running, and what it recorded."""

    orphan: Orphan
    observed_hash: str | None
    action: str  # recorded-running, already-recorded, unchanged, closed-meanwhile

    def to_json(self) -> dict[str, object]:
        return {
            "instance": self.orphan.instance,
            "revision": self.orphan.revision,
            "flow_run_id": self.orphan.flow_run_id,
            "observed_hash": self.observed_hash,
            "action": self.action,
        }


def orphans(
    *,
    instances: Collection[str] | None = None,
    run: str | None = None,
    except_run: str | None = None,
    now: datetime | None = None,
    engine: Engine | None = None,
) -> list[Orphan]:
    """Open deployment records that no live lease of their run covers, oldest first."""
    with reading(engine) as session:
        return orphans_in(
            session, instances=instances, run=run, except_run=except_run, now=now_or_clock(now)
        )


# Open deployment records with their revision's hash (every deploy reads its
# instance's: built once, as building a statement costs more CPU than running it).
_OPEN = (
    select(DEPLOYMENT, MANIFEST.c.hash)
    .join(
        MANIFEST,
        (MANIFEST.c.instance == DEPLOYMENT.c.instance)
        & (MANIFEST.c.number == DEPLOYMENT.c.manifest_number),
    )
    .where(DEPLOYMENT.c.finished_at.is_(None))
    .order_by(DEPLOYMENT.c.id)
)
_OPEN_ON = _OPEN.where(DEPLOYMENT.c.instance.in_(bindparam("instances", expanding=True)))


def orphans_in(
    session: Connection,
    *,
    instances: Collection[str] | None = None,
    run: str | None = None,
    except_run: str | None = None,
    now: datetime,
) -> list[Orphan]:
    """`orphans`, read in the caller's transaction."""
    query, params = _OPEN, {}
    if instances is not None:
        query, params = _OPEN_ON, {"instances": list(instances)}
    if run is not None:
        query = query.where(DEPLOYMENT.c.flow_run_id == run)
    records = session.execute(query, params).all()
    names = sorted({r.instance for r in records})
    leases = (
        {
            row.instance: lease_of(row)
            for row in session.execute(select(LOCK).where(LOCK.c.instance.in_(names)))
        }
        if names
        else {}
    )
    return [
        Orphan(r.instance, r.manifest_number, r.flow_run_id, r.started_at, r.hash)
        for r in records
        if r.flow_run_id != except_run and not holds(leases.get(r.instance), r.flow_run_id, now)
    ]


def close_orphan(
    orphan: Orphan, *, actor: str, flow_run_id: str | None, engine: Engine | None = None
) -> bool:
    """Close an orphan's record as `interrupted`; False when it was closed meanwhile."""
    now = now_or_clock(None)
    with writing(engine) as session:
        try:
            entries = deployments.finish_in(
                session,
                orphan.instance,
                flow_run_id=orphan.flow_run_id,
                outcome="interrupted",
                error=f"run {orphan.flow_run_id} stopped while deploying; closed by recovery",
                now=now,
            )
        except ConflictError:
            return False
        append_events(session, entries, actor=actor, at=now, flow_run_id=flow_run_id)
    return True


def settle(
    orphan: Orphan,
    observed_hash: str | None,
    *,
    actor: str,
    flow_run_id: str | None,
    engine: Engine | None = None,
) -> Settled:
    """Record what the target reports: the orphan's revision runs, or nothing changes."""
    now = now_or_clock(None)
    if observed_hash is None or observed_hash != orphan.hash:
        return Settled(orphan, observed_hash, "unchanged")
    with writing(engine) as session:
        status = session.execute(
            select(MANIFEST.c.status).where(
                (MANIFEST.c.instance == orphan.instance) & (MANIFEST.c.number == orphan.revision)
            )
        ).scalar_one()
        current = session.execute(
            select(fleet_repo.INSTANCE.c.current_revision).where(
                fleet_repo.INSTANCE.c.name == orphan.instance
            )
        ).scalar_one_or_none()
        if status == ManifestStatus.DEPLOYED.value and current == orphan.revision:
            return Settled(orphan, observed_hash, "already-recorded")
        try:
            entries = manifests.mark_in(
                session,
                orphan.instance,
                orphan.revision,
                ManifestStatus.DEPLOYED,
                now=now,
                reason=(
                    f"found running on the target after run {orphan.flow_run_id} "
                    "stopped while deploying it"
                ),
            )
        except ConflictError:
            return Settled(orphan, observed_hash, "unchanged")
        entries.append(
            Entry(
                "recovery.settled",
                f"instance:{orphan.instance}",
                {"revision": orphan.revision, "interrupted_run": orphan.flow_run_id},
            )
        )
        append_events(session, entries, actor=actor, at=now, flow_run_id=flow_run_id)
    return Settled(orphan, observed_hash, "recorded-running")
