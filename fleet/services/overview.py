"""The fleet at a glance: per instance, the facts the console's matrix colours
its cells with, gathered from the services that own them.

- the plan now (`plans.preview`): what would change and why, the decision,
  the advisories that affect what runs;
- the paused runs waiting for approval (`runs.waiting_instances`; Prefect's
  server may be out of reach, and then that fact is unknown, not false);
- drift (`drift.drifted`);
- the last deployment of each instance, when it failed.

The plan of the whole fleet is kept for up to `PLAN_TTL` while the audit
chain's head is the same (any change of state replans at once), so paging
through a large fleet does not plan it again: what moves with time alone (a
deadline passing, a version soaking) shows within that time. The page says
when its plan was made.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select

from fleet.core.errors import FleetError
from fleet.core.state import FleetState
from fleet.db.history import DEPLOYMENT, MANIFEST
from fleet.services import drift, plans, runs
from fleet.services._common import engine_or_default, now_or_clock, reading
from fleet.services.drift import DriftFinding

__all__ = ["FailedDeploy", "Overview", "failed_deployments", "overview"]

FAILED_OUTCOMES = ("failed", "rolled-back")

PLAN_TTL = timedelta(minutes=5)

_CACHE: dict[str, tuple[int, datetime, dict[str, Any]]] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class FailedDeploy:
    """The last deployment of an instance, which failed (and what it tried to change)."""

    instance: str
    revision: int
    outcome: str
    error: str | None
    flow_run_id: str
    finished_at: datetime | None
    components: frozenset[str]


@dataclass(frozen=True, slots=True)
class Overview:
    at: datetime
    planned_at: datetime
    state: FleetState
    plan: dict[str, Any]
    waiting: dict[str, tuple[str, int]] | None
    drifted: dict[str, DriftFinding] = field(default_factory=dict)
    failed: dict[str, FailedDeploy] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def failed_deployments(*, engine: Engine | None = None) -> dict[str, FailedDeploy]:
    """Instances whose most recent deployment record ended failed or rolled back."""
    latest = (
        select(DEPLOYMENT.c.instance, func.max(DEPLOYMENT.c.id).label("id"))
        .group_by(DEPLOYMENT.c.instance)
        .subquery()
    )
    query = (
        select(
            DEPLOYMENT.c.instance,
            DEPLOYMENT.c.manifest_number,
            DEPLOYMENT.c.outcome,
            DEPLOYMENT.c.error,
            DEPLOYMENT.c.flow_run_id,
            DEPLOYMENT.c.finished_at,
            MANIFEST.c.base,
            MANIFEST.c.components,
        )
        .join(latest, latest.c.id == DEPLOYMENT.c.id)
        .join(
            MANIFEST,
            (MANIFEST.c.instance == DEPLOYMENT.c.instance)
            & (MANIFEST.c.number == DEPLOYMENT.c.manifest_number),
        )
        .where(DEPLOYMENT.c.outcome.in_(FAILED_OUTCOMES))
    )
    with reading(engine) as session:
        rows = session.execute(query).all()
    out = {}
    for r in rows:
        base, after = dict(r.base or {}), dict(r.components or {})
        changed = frozenset(c for c in set(base) | set(after) if base.get(c) != after.get(c))
        out[r.instance] = FailedDeploy(
            r.instance,
            r.manifest_number,
            r.outcome,
            r.error,
            r.flow_run_id,
            r.finished_at,
            changed or frozenset(after),
        )
    return out


def _plan_json(now: datetime, engine: Engine) -> tuple[datetime, dict[str, Any]]:
    """The plan of the whole fleet and the time it was made for."""
    memo = plans.current_memo(engine=engine)
    key = engine.url.render_as_string(hide_password=False)
    with _LOCK:
        hit = _CACHE.get(key)
    if hit is not None and hit[0] == id(memo) and hit[1] <= now < hit[1] + PLAN_TTL:
        return hit[1], hit[2]
    at = now.replace(microsecond=0)
    plan = plans.preview(now=at, engine=engine).to_json()
    with _LOCK:
        _CACHE[key] = (id(memo), at, plan)
    return at, plan


def overview(*, now: datetime | None = None, engine: Engine | None = None) -> Overview:
    """Everything the matrix shows, as of `now` (the plan as of `planned_at`, at most
    `PLAN_TTL` before)."""
    now = now_or_clock(now)
    engine = engine_or_default(engine)
    planned_at, plan = _plan_json(now, engine)
    notes: list[str] = []
    waiting: dict[str, tuple[str, int]] | None
    try:
        waiting = runs.waiting_instances(engine=engine)
    except FleetError as exc:  # Prefect's server out of reach: say so, show the rest
        waiting = None
        notes.append(f"Runs waiting for approval are unknown: {exc}")
    return Overview(
        now,
        planned_at,
        plans.current_state(engine=engine),
        plan,
        waiting,
        drift.drifted(engine=engine),
        failed_deployments(engine=engine),
        tuple(notes),
    )
