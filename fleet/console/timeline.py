"""An instance's timeline: revisions, deployments, approvals (verified or
self-declared, and by whom), refusals, rollbacks, drift and advisories, newest
first, each with its Prefect flow run where there is one."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from fleet.core.advisories import Advisory
from fleet.core.audit import AuditEvent
from fleet.services.deployments import Approval, Deployment
from fleet.services.drift import DriftFinding
from fleet.services.manifests import HistoryEntry

__all__ = ["Entry", "timeline"]


@dataclass(frozen=True, slots=True)
class Entry:
    at: datetime
    kind: str  # revision, rollback, deployment, approval, refusal, drift, advisory
    title: str
    detail: str = ""
    who: str = ""
    flow_run_id: str | None = None
    verified: bool | None = None
    tone: str = ""  # good, bad, warn: how the entry is coloured


def _changes(entry: HistoryEntry) -> str:
    return ", ".join(
        f"{c} {a or '(none)'} -> {b or '(none)'}" for c, (a, b) in entry.changes.items()
    )


def timeline(
    *,
    history: Sequence[HistoryEntry],
    deployments: Sequence[Deployment],
    approvals: Sequence[Approval],
    refusals: Iterable[AuditEvent] = (),
    advisories: Iterable[Advisory] = (),
    drift: DriftFinding | None = None,
) -> list[Entry]:
    out: list[Entry] = []
    for h in history:
        r = h.revision
        if r.rollback_of is not None:
            title = f"r{r.number}: rollback to r{r.rollback_of}"
            kind = "rollback"
        else:
            title = f"r{r.number} planned ({h.decision or 'plan'})"
            kind = "revision"
        detail = _changes(h) or "no change"
        if h.warnings:
            detail += " — " + "; ".join(h.warnings)
        out.append(Entry(r.created_at, kind, title, detail, h.created_by, h.flow_run_id))
        if r.deployed_at is not None:
            out.append(
                Entry(
                    r.deployed_at,
                    kind,
                    f"r{r.number} running (now {r.status.value})",
                    detail,
                    h.created_by,
                    h.flow_run_id,
                    tone="good",
                )
            )
    for d in deployments:
        out.append(
            Entry(
                d.started_at,
                "deployment",
                f"deploy of r{d.manifest_number} started",
                "",
                d.started_by,
                d.flow_run_id,
            )
        )
        if d.finished_at is not None:
            tone = "good" if d.outcome == "succeeded" else "bad"
            if d.outcome in ("skipped", "expired", "halted"):
                tone = "warn"
            out.append(
                Entry(
                    d.finished_at,
                    "deployment",
                    f"deploy of r{d.manifest_number} {d.outcome}",
                    d.error or "",
                    d.started_by,
                    d.flow_run_id,
                    tone=tone,
                )
            )
    for a in approvals:
        how = "verified" if a.verified else "self-declared"
        what = {"approve": "approved", "reject": "rejected", "waived": "approval waived"}.get(
            a.decision, a.decision
        )
        revision = f" r{a.manifest_number}" if a.manifest_number is not None else ""
        out.append(
            Entry(
                a.at,
                "approval",
                f"{what}{revision} by {a.approver} ({how})",
                a.comment,
                a.approver,
                a.flow_run_id,
                verified=a.verified,
                tone="bad" if a.decision == "reject" else "good",
            )
        )
    for e in refusals:
        out.append(
            Entry(
                e.at,
                "refusal",
                f"approval by {e.details.get('approver', e.actor)} refused",
                str(e.details.get("reason", "")),
                e.actor,
                e.flow_run_id,
                tone="bad",
            )
        )
    for adv in advisories:
        out.append(
            Entry(
                adv.published_at,
                "advisory",
                f"{adv.id} ({adv.severity}) published: affects {adv.component}",
                adv.summary or "",
                tone="warn",
            )
        )
    if drift is not None:
        out.append(
            Entry(
                drift.observed_at,
                "drift",
                "drift found",
                drift.summary,
                flow_run_id=drift.flow_run_id,
                tone="bad",
            )
        )
    out.sort(key=lambda e: e.at, reverse=True)
    return out
