"""Approvals inside a rollout run: what the run waits for, what has been given,
refusals, and the tally (`fleet.core.approvals`) over Fleet's records.

When a run opens its approval gate it records one *request* per instance:
the revision and content hash the form shows, how many approvals, whether
only verified ones count, the requester and the deadline. Every approval
path (the Prefect UI's form, a one-time code, the API) records decisions
against those requests, and the run and the API count them with the same
tally from the same records: Fleet's records are the system of record, the
Prefect run input is only the way a decision arrives.

Recording is idempotent per run, instance, revision, person (after the one
identity normalisation), decision and verification, so a run that
re-executes from the top (a suspended run resumes that way) replays its
inputs without recording anything twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, select

from fleet.core.approvals import ApprovalTally, Ballot, Request, Verdict
from fleet.core.durations import isoformat
from fleet.core.identity import check_identity, identity_key
from fleet.db.audit import Entry, append_events
from fleet.db.history import APPROVAL, APPROVAL_REQUEST, DEPLOYMENT
from fleet.db.models import AuditEventRow, table_of
from fleet.services import audit, deployments
from fleet.services._common import now_or_clock, reading, writing

__all__ = [
    "OpenRequests",
    "decided_in",
    "given",
    "open_requests",
    "record",
    "record_refusal",
    "requests_of",
    "still_open",
    "tally",
]

_AUDIT = table_of(AuditEventRow)


@dataclass(frozen=True, slots=True)
class OpenRequests:
    """What one run waits for: its requester, and per instance the request and deadline."""

    flow_run_id: str
    requested_by: str
    requests: Mapping[str, Request]
    deadlines: Mapping[str, datetime]


def _requests(session: Connection, flow_run_id: str) -> OpenRequests | None:
    rows = session.execute(
        select(APPROVAL_REQUEST)
        .where(APPROVAL_REQUEST.c.flow_run_id == flow_run_id)
        .order_by(APPROVAL_REQUEST.c.id)
    ).all()
    if not rows:
        return None
    return OpenRequests(
        flow_run_id,
        rows[0].requested_by,
        {
            r.instance: Request(
                instance=r.instance,
                revision=r.manifest_number,
                manifest_hash=r.manifest_hash,
                required=r.approvals_required,
                verified_only=r.verified_only,
            )
            for r in rows
        },
        {r.instance: r.deadline for r in rows},
    )


def open_requests(
    requests: Sequence[Request],
    *,
    requested_by: str,
    deadlines: Mapping[str, datetime],
    flow_run_id: str,
    now: datetime | None = None,
    engine: Engine | None = None,
) -> OpenRequests:
    """Record what the run waits for (once: a replayed run finds its requests).

    Returns every request of the run as recorded.
    """
    now = now_or_clock(now)
    check_identity(requested_by, kind="requester")
    with writing(engine) as session:
        known = _requests(session, flow_run_id)
        have = set(known.requests) if known else set()
        new = [r for r in requests if r.instance not in have]
        if new:
            session.execute(
                insert(APPROVAL_REQUEST),
                [
                    {
                        "flow_run_id": flow_run_id,
                        "instance": r.instance,
                        "manifest_number": r.revision,
                        "manifest_hash": r.manifest_hash,
                        "approvals_required": r.required,
                        "verified_only": r.verified_only,
                        "requested_by": requested_by,
                        "opened_at": now,
                        "deadline": deadlines[r.instance],
                    }
                    for r in new
                ],
            )
            append_events(
                session,
                [
                    Entry(
                        "approval.request",
                        f"instance:{r.instance}",
                        {
                            "revision": r.revision,
                            "hash": r.manifest_hash,
                            "required": r.required,
                            "verified_only": r.verified_only,
                            "deadline": isoformat(deadlines[r.instance]),
                        },
                    )
                    for r in new
                ],
                actor=requested_by,
                at=now,
                flow_run_id=flow_run_id,
            )
        stored = _requests(session, flow_run_id)
    assert stored is not None
    return stored


def requests_of(flow_run_id: str, *, engine: Engine | None = None) -> OpenRequests | None:
    """What the run waits for, as recorded when it opened its approval gate (None: nothing)."""
    with reading(engine) as session:
        return _requests(session, flow_run_id)


def given(flow_run_id: str, *, engine: Engine | None = None) -> list[deployments.Approval]:
    """Every approval and rejection recorded for this run, oldest first."""
    with reading(engine) as session:
        rows = session.execute(
            select(APPROVAL).where(APPROVAL.c.flow_run_id == flow_run_id).order_by(APPROVAL.c.id)
        ).all()
    return [deployments.approval_of(r) for r in rows]


def _ballot(a: deployments.Approval) -> Ballot:
    return Ballot(
        a.instance,
        a.approver,
        a.decision == "approve",
        a.verified,
        a.manifest_number,
        a.manifest_hash,
        a.comment,
    )


def tally(flow_run_id: str, *, engine: Engine | None = None) -> ApprovalTally | None:
    """The run's decisions counted against what it waits for (None: it waits for nothing)."""
    with reading(engine) as session:
        opened = _requests(session, flow_run_id)
        rows = session.execute(
            select(APPROVAL)
            .where((APPROVAL.c.flow_run_id == flow_run_id) & (APPROVAL.c.decision != "waived"))
            .order_by(APPROVAL.c.id)
        ).all()
    if opened is None:
        return None
    ballots = [_ballot(deployments.approval_of(r)) for r in rows]
    return ApprovalTally.of(opened.requested_by, opened.requests.values(), ballots)


def still_open(
    flow_run_id: str, *, now: datetime | None = None, engine: Engine | None = None
) -> dict[str, Request]:
    """Instance -> request, for what the run still waits on: requested, neither
    approved nor rejected, nothing recorded for it yet (expired, deployed), and
    before its deadline."""
    now = now_or_clock(now)
    opened = requests_of(flow_run_id, engine=engine)
    counted = tally(flow_run_id, engine=engine)
    if opened is None or counted is None:
        return {}
    decided = decided_in(flow_run_id, engine=engine)
    return {
        name: request
        for name, request in opened.requests.items()
        if name not in decided
        and counted.verdict(name) is Verdict.PENDING
        and opened.deadlines[name] > now
    }


def decided_in(flow_run_id: str, *, engine: Engine | None = None) -> dict[str, str]:
    """Instance -> outcome, for the instances this run has a deployment record of."""
    with reading(engine) as session:
        rows = session.execute(
            select(DEPLOYMENT.c.instance, DEPLOYMENT.c.outcome).where(
                DEPLOYMENT.c.flow_run_id == flow_run_id
            )
        ).all()
    return {r.instance: r.outcome for r in rows}


def record(
    instance: str,
    *,
    approver: str,
    decision: str,
    comment: str,
    verified: bool,
    flow_run_id: str,
    manifest_number: int,
    manifest_hash: str,
    via: str,
    now: datetime | None = None,
    engine: Engine | None = None,
) -> deployments.Approval:
    """Record a decision unless this person already took the same one on this revision
    in this run, verified or as weakly (a replayed input; the run input with which
    the API resumed the run after recording a verified decision). A verified
    decision after a self-declared one is recorded: it is stronger. `via` (form,
    code, api) goes into the audit event."""
    key = identity_key(approver, kind="approver")
    for existing in given(flow_run_id, engine=engine):
        if (
            existing.instance == instance
            and existing.decision == decision
            and (existing.verified or not verified)
            and existing.manifest_number == manifest_number
            and existing.manifest_hash == manifest_hash
            and identity_key(existing.approver) == key
        ):
            return existing
    return deployments.record_approval(
        instance,
        approver=approver,
        decision=decision,
        comment=comment,
        verified=verified,
        flow_run_id=flow_run_id,
        manifest_number=manifest_number,
        manifest_hash=manifest_hash,
        via=via,
        now=now,
        engine=engine,
    )


def record_refusal(
    instances: Sequence[str],
    *,
    approver: str,
    reason: str,
    key: str,
    flow_run_id: str,
    details: Mapping[str, Any] | None = None,
    engine: Engine | None = None,
) -> bool:
    """Record that an input was refused (four eyes, a spent code, ...); once per run
    and input key. `approver` is recorded as given (it may be no valid name)."""
    with reading(engine) as session:
        seen = session.execute(
            select(_AUDIT.c.details).where(
                (_AUDIT.c.flow_run_id == flow_run_id) & (_AUDIT.c.action == "approval.refused")
            )
        ).scalars()
        for text in seen:
            if f'"key":"{key}"' in str(text):
                return False
    audit.append(
        [
            Entry(
                "approval.refused",
                f"instance:{name}",
                {"approver": approver, "reason": reason, "key": key, **(details or {})},
            )
            for name in instances
        ],
        actor=_actor(approver),
        flow_run_id=flow_run_id,
        engine=engine,
    )
    return True


def _actor(name: str) -> str:
    """The audit actor for a refused input: the name when it is one, else a placeholder
    (the name as typed stays in the event's details)."""
    try:
        return check_identity(name)
    except ValueError:
        return "(not a name)"
