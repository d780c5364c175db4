"""Deployment records and approvals, linked to the Prefect flow run by its id.

A deployment record is one per instance per flow run: the manifest revision,
who started it, started/finished, outcome and error. An approval names its
approver, decision, comment and time, the revision and content hash it was
shown, and whether the approver was `verified` (a credential Fleet checked:
an API token, a one-time approval code) or self-declared (a name typed into
the Prefect UI). The person who requested a run cannot approve it (four eyes,
`fleet.core.approvals.may_approve`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Row, bindparam, insert, select, tuple_, update

from fleet.core.approvals import may_approve
from fleet.core.durations import isoformat
from fleet.core.errors import ConflictError, InputError, NotFoundError, PermissionDenied
from fleet.core.identity import check_identity
from fleet.db import fleet as fleet_repo
from fleet.db.audit import Entry, append_events
from fleet.db.bulk import insert_into
from fleet.db.history import APPROVAL, APPROVAL_REQUEST, DEPLOYMENT, DEPLOYMENT_OF_RUN, MANIFEST
from fleet.services._common import now_or_clock, reading, writing

__all__ = [
    "APPROVAL_DECISIONS",
    "OUTCOMES",
    "Approval",
    "Deployment",
    "approval_of",
    "approvals_for",
    "deployments_of",
    "finish_deployment",
    "finish_in",
    "finish_many_in",
    "outcome_in",
    "outcomes_in",
    "record_approval",
    "start_deployment",
    "start_in",
    "start_many_in",
]

APPROVAL_DECISIONS = ("approve", "reject", "waived")
# `interrupted`: the run stopped while deploying (closed by recovery);
# `already-deployed`: another run had deployed the revision (nothing done);
# `locked`: another run held the instance for longer than the rollout waits;
# `stale-approval`: the approved revision was no longer safe to deploy (nothing done).
OUTCOMES = (
    "succeeded",
    "failed",
    "rolled-back",
    "skipped",
    "expired",
    "halted",
    "interrupted",
    "already-deployed",
    "locked",
    "stale-approval",
)


@dataclass(frozen=True, slots=True)
class Deployment:
    instance: str
    manifest_number: int
    flow_run_id: str
    started_by: str
    started_at: datetime
    finished_at: datetime | None
    outcome: str
    error: str | None
    approvals: tuple[Approval, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "instance": self.instance,
            "revision": self.manifest_number,
            "flow_run_id": self.flow_run_id,
            "started_by": self.started_by,
            "started_at": isoformat(self.started_at),
            "finished_at": None if self.finished_at is None else isoformat(self.finished_at),
            "outcome": self.outcome,
            "error": self.error,
            "approvals": [a.to_json() for a in self.approvals],
        }


@dataclass(frozen=True, slots=True)
class Approval:
    instance: str
    approver: str
    decision: str
    comment: str
    at: datetime
    verified: bool
    flow_run_id: str | None
    manifest_number: int | None
    manifest_hash: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "instance": self.instance,
            "approver": self.approver,
            "decision": self.decision,
            "comment": self.comment,
            "at": isoformat(self.at),
            "verified": self.verified,
            "flow_run_id": self.flow_run_id,
            "revision": self.manifest_number,
            "manifest_hash": self.manifest_hash,
        }


def approval_of(row: Row[Any]) -> Approval:
    return Approval(
        row.instance,
        row.approver,
        row.decision,
        row.comment,
        row.at,
        row.verified,
        row.flow_run_id,
        row.manifest_number,
        row.manifest_hash,
    )


# Statements every deploy runs, built once (building one costs more CPU than running it).
_REVISION_ID = select(MANIFEST.c.id).where(
    (MANIFEST.c.instance == bindparam("instance")) & (MANIFEST.c.number == bindparam("number"))
)
_REVISIONS_AT = select(MANIFEST.c.instance, MANIFEST.c.number).where(
    tuple_(MANIFEST.c.instance, MANIFEST.c.number).in_(bindparam("pairs", expanding=True))
)
_OUTCOME = select(DEPLOYMENT.c.outcome).where(
    (DEPLOYMENT.c.instance == bindparam("instance"))
    & (DEPLOYMENT.c.flow_run_id == bindparam("run"))
)
_OUTCOMES = select(DEPLOYMENT.c.instance, DEPLOYMENT.c.outcome).where(
    DEPLOYMENT.c.instance.in_(bindparam("instances", expanding=True))
    & (DEPLOYMENT.c.flow_run_id == bindparam("run"))
)
# Closes the run's open records on the instances, saying which revision each was.
_FINISH = (
    update(DEPLOYMENT)
    .where(
        DEPLOYMENT.c.instance.in_(bindparam("of_instances", expanding=True))
        & (DEPLOYMENT.c.flow_run_id == bindparam("of_run"))
        & DEPLOYMENT.c.finished_at.is_(None)
    )
    .values(
        finished_at=bindparam("ended"),
        outcome=bindparam("result"),
        error=bindparam("why"),
    )
    .returning(DEPLOYMENT.c.instance, DEPLOYMENT.c.manifest_number)
)


def _require_revision(session: Any, instance: str, number: int) -> None:
    found = session.execute(_REVISION_ID, {"instance": instance, "number": number}).first()
    if found is None:
        raise NotFoundError(f"Unknown manifest revision: {instance!r} revision {number}")


def start_deployment(
    instance: str,
    manifest_number: int,
    *,
    flow_run_id: str,
    actor: str,
    now: datetime | None = None,
    engine: Engine | None = None,
) -> None:
    """Record that flow run `flow_run_id` starts deploying a revision to `instance`."""
    now = now_or_clock(now)
    with writing(engine) as session:
        entries = start_in(
            session, instance, manifest_number, flow_run_id=flow_run_id, actor=actor, now=now
        )
        append_events(session, entries, actor=actor, at=now, flow_run_id=flow_run_id)


def start_in(
    session: Connection,
    instance: str,
    manifest_number: int,
    *,
    flow_run_id: str,
    actor: str,
    now: datetime,
    unrecorded: bool = False,
) -> list[Entry]:
    """`start_deployment` inside the caller's transaction; returns the audit entries.

    `unrecorded`: the caller has read, in this transaction and under the write
    lock, that the run has no record on the instance (the check is not run twice).
    """
    return start_many_in(
        session,
        [(instance, manifest_number)],
        flow_run_id=flow_run_id,
        actor=actor,
        now=now,
        unrecorded=unrecorded,
    )


def start_many_in(
    session: Connection,
    starts: Sequence[tuple[str, int]],
    *,
    flow_run_id: str,
    actor: str,
    now: datetime,
    unrecorded: bool = False,
) -> list[Entry]:
    """`start_in` for several (instance, revision) pairs at once, in a few
    statements whatever their number; the audit entries in their order."""
    if not starts:
        return []
    names = [instance for instance, _ in starts]
    if len(set(names)) != len(names):
        raise ConflictError(f"Two deployment records of one instance for run {flow_run_id}")
    rows = session.execute(_REVISIONS_AT, {"pairs": list(starts)})
    found = {(r.instance, r.number) for r in rows}
    for instance, number in starts:
        if (instance, number) not in found:
            raise NotFoundError(f"Unknown manifest revision: {instance!r} revision {number}")
    if not unrecorded:
        recorded = outcomes_in(session, names, flow_run_id)
        for instance in names:
            if instance in recorded:
                raise ConflictError(
                    f"{instance} already has a deployment record for run {flow_run_id}"
                )
    session.execute(
        insert_into(DEPLOYMENT),
        [
            {
                "instance": instance,
                "manifest_number": number,
                "flow_run_id": flow_run_id,
                "started_by": actor,
                "started_at": now,
                "finished_at": None,
                "outcome": "running",
                "error": None,
            }
            for instance, number in starts
        ],
    )
    return [
        Entry("deployment.start", f"instance:{instance}", {"revision": number})
        for instance, number in starts
    ]


def outcome_in(session: Connection, instance: str, flow_run_id: str) -> str | None:
    """The outcome recorded for this run on this instance (`running` while under way)."""
    row = session.execute(_OUTCOME, {"instance": instance, "run": flow_run_id}).first()
    return None if row is None else str(row.outcome)


def outcomes_in(session: Connection, instances: Sequence[str], flow_run_id: str) -> dict[str, str]:
    """`outcome_in` of several instances in one read: those the run has a record on."""
    if not instances:
        return {}
    rows = session.execute(_OUTCOMES, {"instances": list(instances), "run": flow_run_id})
    return {str(r.instance): str(r.outcome) for r in rows}


def finish_deployment(
    instance: str,
    *,
    flow_run_id: str,
    outcome: str,
    error: str | None = None,
    actor: str,
    now: datetime | None = None,
    engine: Engine | None = None,
) -> None:
    """Record how flow run `flow_run_id` ended on `instance`."""
    now = now_or_clock(now)
    with writing(engine) as session:
        entries = finish_in(
            session, instance, flow_run_id=flow_run_id, outcome=outcome, error=error, now=now
        )
        append_events(session, entries, actor=actor, at=now, flow_run_id=flow_run_id)


def finish_in(
    session: Connection,
    instance: str,
    *,
    flow_run_id: str,
    outcome: str,
    error: str | None,
    now: datetime,
) -> list[Entry]:
    """`finish_deployment` inside the caller's transaction; returns the audit entries."""
    return finish_many_in(session, [(instance, outcome, error)], flow_run_id=flow_run_id, now=now)


def finish_many_in(
    session: Connection,
    ends: Sequence[tuple[str, str, str | None]],
    *,
    flow_run_id: str,
    now: datetime,
) -> list[Entry]:
    """Close the run's open records of several instances, each (instance, outcome,
    error): one statement per distinct outcome and error, so a chunk that went
    well is closed in one. The audit entries in their order; nothing is closed
    when one record is missing or closed already (the error names it)."""
    for _, outcome, _ in ends:
        if outcome not in OUTCOMES:
            raise InputError(
                f"Invalid deployment outcome: {outcome!r} (one of {', '.join(OUTCOMES)})"
            )
    names = [instance for instance, _, _ in ends]
    if len(set(names)) != len(names):
        raise ConflictError(f"One instance's record closed twice for run {flow_run_id}")
    alike: dict[tuple[str, str | None], list[str]] = {}
    for instance, outcome, error in ends:
        alike.setdefault((outcome, error), []).append(instance)
    closed: dict[str, int] = {}
    for (outcome, error), instances in alike.items():
        rows = session.execute(
            _FINISH,
            {
                "of_instances": instances,
                "of_run": flow_run_id,
                "ended": now,
                "result": outcome,
                "why": error,
            },
        )
        closed.update({str(r.instance): int(r.manifest_number) for r in rows})
    for instance in names:
        if instance in closed:
            continue
        # No open record: say which way.
        row = session.execute(DEPLOYMENT_OF_RUN, {"instance": instance, "run": flow_run_id}).first()
        if row is None:
            raise NotFoundError(f"No deployment record of {instance!r} for run {flow_run_id!r}")
        raise ConflictError(f"{instance} run {flow_run_id} already finished ({row.outcome})")
    return [
        Entry(
            f"deployment.{outcome}",
            f"instance:{instance}",
            {"revision": closed[instance], "error": error},
        )
        for instance, outcome, error in ends
    ]


def record_approval(
    instance: str,
    *,
    approver: str,
    decision: str,
    comment: str = "",
    verified: bool = False,
    flow_run_id: str | None = None,
    manifest_number: int | None = None,
    manifest_hash: str | None = None,
    via: str | None = None,
    now: datetime | None = None,
    engine: Engine | None = None,
) -> Approval:
    """Store one approval (or rejection) and its audit event; four eyes hold.

    The approver is stored as given (trimmed); names are compared through
    the one identity rule. `via` (form, code, api, policy) is recorded in
    the audit event.
    """
    now = now_or_clock(now)
    if decision not in APPROVAL_DECISIONS:
        raise InputError(
            f"Invalid approval decision: {decision!r} (one of {', '.join(APPROVAL_DECISIONS)})"
        )
    approver = check_identity(approver, kind="approver")
    with writing(engine) as session:
        known = session.execute(
            select(fleet_repo.INSTANCE.c.id).where(fleet_repo.INSTANCE.c.name == instance)
        ).first()
        if known is None:
            raise NotFoundError(f"Unknown instance: {instance!r}")
        if manifest_number is not None:
            _require_revision(session, instance, manifest_number)
        if flow_run_id is not None and decision == "approve":
            for requester in _requesters(session, flow_run_id):
                if not may_approve(approver, requester):
                    raise PermissionDenied(
                        f"{approver!r} requested run {flow_run_id} and cannot approve it "
                        "(four eyes)"
                    )
        approval = Approval(
            instance,
            approver,
            decision,
            comment,
            now,
            verified,
            flow_run_id,
            manifest_number,
            manifest_hash,
        )
        session.execute(
            insert(APPROVAL),
            [
                {
                    "instance": instance,
                    "manifest_number": manifest_number,
                    "flow_run_id": flow_run_id,
                    "approver": approver,
                    "decision": decision,
                    "comment": comment,
                    "at": now,
                    "verified": verified,
                    "manifest_hash": manifest_hash,
                }
            ],
        )
        append_events(
            session,
            [
                Entry(
                    f"approval.{decision}",
                    f"instance:{instance}",
                    {
                        "revision": manifest_number,
                        "hash": manifest_hash,
                        "comment": comment,
                        "verified": verified,
                        **({"via": via} if via else {}),
                    },
                )
            ],
            actor=approver,
            at=now,
            flow_run_id=flow_run_id,
        )
        return approval


def _requesters(session: Connection, flow_run_id: str) -> set[str]:
    """Who requested the run: as its approval requests and deployment records name them."""
    asked = session.execute(
        select(APPROVAL_REQUEST.c.requested_by).where(APPROVAL_REQUEST.c.flow_run_id == flow_run_id)
    ).scalars()
    started = session.execute(
        select(DEPLOYMENT.c.started_by).where(DEPLOYMENT.c.flow_run_id == flow_run_id)
    ).scalars()
    return set(asked) | set(started)


def approvals_for(
    instance: str, *, flow_run_id: str | None = None, engine: Engine | None = None
) -> list[Approval]:
    with reading(engine) as session:
        query = select(APPROVAL).where(APPROVAL.c.instance == instance)
        if flow_run_id is not None:
            query = query.where(APPROVAL.c.flow_run_id == flow_run_id)
        return [approval_of(r) for r in session.execute(query.order_by(APPROVAL.c.id))]


def deployments_of(instance: str, *, engine: Engine | None = None) -> list[Deployment]:
    """The instance's deployment records, oldest first, each with its run's approvals."""
    with reading(engine) as session:
        rows = session.execute(
            select(DEPLOYMENT).where(DEPLOYMENT.c.instance == instance).order_by(DEPLOYMENT.c.id)
        ).all()
        approvals = [
            approval_of(r)
            for r in session.execute(
                select(APPROVAL).where(APPROVAL.c.instance == instance).order_by(APPROVAL.c.id)
            )
        ]
    return _deployments(rows, approvals)


def deployments_of_run(
    flow_run_id: str, *, instance: str | None = None, engine: Engine | None = None
) -> list[Deployment]:
    """Flow run `flow_run_id`'s deployment records (or only `instance`'s), by instance name.

    One instance's deploy in a run of thousands is one indexed read here,
    whatever the Prefect UI shows of the run.
    """
    with reading(engine) as session:
        query = select(DEPLOYMENT).where(DEPLOYMENT.c.flow_run_id == flow_run_id)
        approvals_query = select(APPROVAL).where(APPROVAL.c.flow_run_id == flow_run_id)
        if instance is not None:
            query = query.where(DEPLOYMENT.c.instance == instance)
            approvals_query = approvals_query.where(APPROVAL.c.instance == instance)
        rows = session.execute(query.order_by(DEPLOYMENT.c.instance, DEPLOYMENT.c.id)).all()
        approvals = [
            approval_of(r) for r in session.execute(approvals_query.order_by(APPROVAL.c.id))
        ]
    return _deployments(rows, approvals)


def _deployments(rows: Sequence[Any], approvals: Sequence[Approval]) -> list[Deployment]:
    by_run_and_instance: dict[tuple[str | None, str], list[Approval]] = {}
    for approval in approvals:
        by_run_and_instance.setdefault((approval.flow_run_id, approval.instance), []).append(
            approval
        )
    return [
        Deployment(
            r.instance,
            r.manifest_number,
            r.flow_run_id,
            r.started_by,
            r.started_at,
            r.finished_at,
            r.outcome,
            r.error,
            tuple(by_run_and_instance.get((r.flow_run_id, r.instance), ())),
        )
        for r in rows
    ]
