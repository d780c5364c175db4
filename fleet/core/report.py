"""The audit report: what ran on an instance at a moment, and on what records it rests.

For one instance and one moment the report names the manifest revision that
was running (`fleet.core.rollback.running_at`), the run that planned it and
the run that deployed it, every approval of that revision (who, verified or
self-declared, when, which revision and hash they were shown), the
advisories affecting it then (`fleet.core.advisories.Security` judged at
that moment, with the risk acceptances valid then), and the audit events
it rests on with whether the chain verifies up to them.

Everything here comes from Fleet's own records: Prefect run ids are links,
never the source of an answer, so the report still answers once Prefect has
dropped its copy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from packaging.version import Version

from fleet.core.advisories import (
    DEFAULT_DEADLINES,
    Advisory,
    Finding,
    RiskAcceptance,
    Security,
    Severity,
)
from fleet.core.audit import AuditEvent, ChainVerdict
from fleet.core.durations import isoformat

__all__ = [
    "AuditReport",
    "ReportApproval",
    "ReportRevision",
    "ReportRun",
    "advisories_at",
    "rests_on",
    "run_link",
]


def run_link(prefect_ui: str | None, flow_run_id: str | None) -> str | None:
    """The Prefect UI's page of a flow run, when the UI's address is known.

    >>> run_link("http://127.0.0.1:4200", "0b7c")
    'http://127.0.0.1:4200/runs/flow-run/0b7c'
    """
    if not prefect_ui or not flow_run_id:
        return None
    return f"{prefect_ui.rstrip('/')}/runs/flow-run/{flow_run_id}"


@dataclass(frozen=True, slots=True)
class ReportRevision:
    """The running manifest revision and how it came to be."""

    number: int
    hash: str
    components: Mapping[str, str]
    status: str
    decision: str | None
    created_at: datetime
    created_by: str
    deployed_at: datetime | None
    parent: int | None = None
    rollback_of: int | None = None


@dataclass(frozen=True, slots=True)
class ReportRun:
    """A Prefect flow run the report names (`planned` or `deployed` the revision)."""

    role: str
    flow_run_id: str
    link: str | None = None
    started_by: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    outcome: str | None = None


@dataclass(frozen=True, slots=True)
class ReportApproval:
    """One decision on the revision: who, how sure Fleet is of who, what they saw."""

    approver: str
    decision: str
    verified: bool
    at: datetime
    comment: str
    flow_run_id: str | None
    shown_revision: int | None
    shown_hash: str | None

    def identity(self) -> str:
        """`verified` (a credential Fleet checked) or `self-declared` (a typed name)."""
        return "verified" if self.verified else "self-declared"


def advisories_at(
    instance: str,
    components: Mapping[str, str],
    advisories: Sequence[Advisory],
    acceptances: Iterable[tuple[RiskAcceptance, datetime | None]],
    *,
    at: datetime,
    deadlines: Mapping[Severity, timedelta | None] = DEFAULT_DEADLINES,
) -> tuple[Finding, ...]:
    """The advisories affecting `components` on `instance` as they stood at `at`.

    Only advisories published by then count, and only risk acceptances that
    had been granted by then (`granted` None: not known, taken as granted)
    and had not yet expired. `Security` judges the rest (affected, deadline,
    enforced) at `at`. Accepted findings are kept, with their acceptance.

    >>> [f.advisory.id for f in advisories_at("acme-prod", {"api": "2.3.0"}, [critical], [],
    ...     at=now)]
    ['FLEET-2026-0001']
    """
    known = [a for a in advisories if a.published_at <= at]
    valid = [ra for ra, granted in acceptances if granted is None or granted <= at]
    security = Security(known, valid, now=at, deadlines=deadlines)
    out: list[Finding] = []
    for component, version in sorted(components.items()):
        out.extend(security.findings(instance, component, Version(version)))
    return tuple(
        sorted(out, key=lambda f: (-f.advisory.severity.rank, f.advisory.id, f.advisory.component))
    )


def rests_on(
    events: Iterable[AuditEvent],
    *,
    instance: str,
    revision: int,
    runs: Iterable[str],
    at: datetime,
) -> tuple[AuditEvent, ...]:
    """The audit events a report on `revision` of `instance` rests on, up to `at`.

    Those about the instance that name the revision (its compile, approval
    request, approvals, deploy, status changes), those its runs recorded on
    the instance, and risk acceptances on the instance.

    >>> from fleet.core.audit import AuditEvent
    >>> e = AuditEvent(1, now, "ops", "approval.approve", "instance:acme-prod", {"revision": 2})
    >>> [x.seq for x in rests_on([e], instance="acme-prod", revision=2, runs=[], at=now)]
    [1]
    """
    subject = f"instance:{instance}"
    risk = f"risk:{instance}/"
    run_ids = frozenset(runs)
    out: list[AuditEvent] = []
    for event in events:
        if event.at > at:
            continue
        if event.subject == subject:
            named = event.details.get("revision") if isinstance(event.details, Mapping) else None
            if named == revision or (
                event.flow_run_id is not None and event.flow_run_id in run_ids
            ):
                out.append(event)
        elif event.subject.startswith(risk):
            out.append(event)
    return tuple(out)


def _finding_json(finding: Finding) -> dict[str, Any]:
    adv = finding.advisory
    acceptance = finding.acceptance
    return {
        "advisory": adv.id,
        "component": adv.component,
        "version": str(finding.version),
        "severity": adv.severity.value,
        "published_at": isoformat(adv.published_at),
        "deadline": None if finding.deadline is None else isoformat(finding.deadline),
        "overdue": finding.overdue,
        "enforced": finding.enforced,
        "open": finding.open,
        "fixed_in": [str(v) for v in adv.fixed_versions()],
        "risk_acceptance": None
        if acceptance is None
        else {
            "by": acceptance.by,
            "reason": acceptance.reason,
            "until": isoformat(acceptance.until),
        },
    }


def _run_json(run: ReportRun) -> dict[str, Any]:
    return {
        "role": run.role,
        "flow_run_id": run.flow_run_id,
        "link": run.link,
        "started_by": run.started_by,
        "started_at": None if run.started_at is None else isoformat(run.started_at),
        "finished_at": None if run.finished_at is None else isoformat(run.finished_at),
        "outcome": run.outcome,
    }


@dataclass(frozen=True, slots=True)
class AuditReport:
    """What ran on `instance` at `at`, who approved it, what was open against it, and
    the audit events that say so. `revision` None: nothing was running then."""

    instance: str
    at: datetime
    revision: ReportRevision | None
    planned_by: ReportRun | None = None
    deployed_by: ReportRun | None = None
    approvals: tuple[ReportApproval, ...] = ()
    approvals_required: int | None = None
    advisories: tuple[Finding, ...] = ()
    events: tuple[AuditEvent, ...] = ()
    chain: ChainVerdict | None = None

    @property
    def open_advisories(self) -> tuple[Finding, ...]:
        """The findings not risk-accepted at `at`."""
        return tuple(f for f in self.advisories if f.open)

    def to_json(self) -> dict[str, Any]:
        r = self.revision
        return {
            "instance": self.instance,
            "at": isoformat(self.at),
            "revision": None
            if r is None
            else {
                "number": r.number,
                "hash": r.hash,
                "components": dict(r.components),
                "status": r.status,
                "decision": r.decision,
                "created_at": isoformat(r.created_at),
                "created_by": r.created_by,
                "deployed_at": None if r.deployed_at is None else isoformat(r.deployed_at),
                "parent": r.parent,
                "rollback_of": r.rollback_of,
            },
            "planned_by": None if self.planned_by is None else _run_json(self.planned_by),
            "deployed_by": None if self.deployed_by is None else _run_json(self.deployed_by),
            "approvals_required": self.approvals_required,
            "approvals": [
                {
                    "approver": a.approver,
                    "decision": a.decision,
                    "identity": a.identity(),
                    "verified": a.verified,
                    "at": isoformat(a.at),
                    "comment": a.comment,
                    "flow_run_id": a.flow_run_id,
                    "shown_revision": a.shown_revision,
                    "shown_hash": a.shown_hash,
                }
                for a in self.approvals
            ],
            "advisories": [_finding_json(f) for f in self.advisories],
            "events": [
                {
                    "seq": e.seq,
                    "at": isoformat(e.at),
                    "actor": e.actor,
                    "action": e.action,
                    "subject": e.subject,
                    "flow_run_id": e.flow_run_id,
                    "hash": e.hash,
                }
                for e in self.events
            ],
            "chain": None
            if self.chain is None
            else {
                "ok": self.chain.ok,
                "checked": self.chain.checked,
                "broken_seq": self.chain.broken_seq,
                "reason": self.chain.reason,
            },
        }

    def to_markdown(self) -> str:
        """The report as a Markdown document an auditor can file."""
        return "\n".join(_markdown(self)) + "\n"

    def to_text(self) -> str:
        """The report as plain text tables for a terminal."""
        return "\n".join(_text(self)) + "\n"


def _chain_words(report: AuditReport) -> str:
    chain = report.chain
    if chain is None:
        return "no audit events to verify"
    if chain.ok:
        return f"verifies: events 1 to {chain.checked} recomputed, no broken link"
    return f"BROKEN at event {chain.broken_seq}: {chain.reason}"


def _adv_words(f: Finding) -> tuple[str, str, str, str]:
    deadline = "report only" if f.deadline is None else isoformat(f.deadline)
    state = "enforced" if f.enforced else ("overdue" if f.overdue else "open")
    if f.acceptance is not None:
        a = f.acceptance
        state = f"risk accepted by {a.by} until {isoformat(a.until)}: {a.reason}"
    return (
        f"{f.advisory.id} on {f.advisory.component} {f.version}",
        str(f.advisory.severity),
        deadline,
        state,
    )


def _md_cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_table(head: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines.extend("| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows)
    return lines


def _run_md(run: ReportRun | None) -> str:
    if run is None:
        return "not recorded"
    name = f"[{run.flow_run_id}]({run.link})" if run.link else f"`{run.flow_run_id}`"
    extra = []
    if run.started_by:
        extra.append(f"started by {run.started_by}")
    if run.outcome:
        extra.append(run.outcome)
    if run.finished_at:
        extra.append(f"finished {isoformat(run.finished_at)}")
    return name + (f" ({', '.join(extra)})" if extra else "")


def _markdown(report: AuditReport) -> list[str]:
    lines = [f"# Audit report: {report.instance} at {isoformat(report.at)}", ""]
    r = report.revision
    if r is None:
        lines += ["Nothing was running on this instance at that time (no deployed revision).", ""]
    else:
        lines += [
            "## Running manifest",
            "",
            f"Revision **{r.number}** (hash `{r.hash}`), deployed "
            f"{'-' if r.deployed_at is None else isoformat(r.deployed_at)}, planned "
            f"{isoformat(r.created_at)} by {r.created_by}"
            + (f" as a rollback of revision {r.rollback_of}" if r.rollback_of else "")
            + (f", decision `{r.decision}`" if r.decision else "")
            + ".",
            "",
            *_md_table(("component", "version"), sorted(r.components.items())),
            "",
            "## Runs",
            "",
            f"- Planned by: {_run_md(report.planned_by)}",
            f"- Deployed by: {_run_md(report.deployed_by)}",
            "",
            "## Approvals",
            "",
        ]
        if report.approvals_required is not None:
            lines += [f"Approvals required: {report.approvals_required}.", ""]
        if report.approvals:
            lines += _md_table(
                ("approver", "decision", "identity", "at", "shown", "comment"),
                (
                    (
                        a.approver,
                        a.decision,
                        a.identity(),
                        isoformat(a.at),
                        f"revision {a.shown_revision} `{(a.shown_hash or '-')[:12]}`",
                        a.comment or "-",
                    )
                    for a in report.approvals
                ),
            )
        else:
            lines.append("No approval is recorded for this revision.")
        lines += ["", "## Advisories", ""]
        if report.advisories:
            lines += _md_table(
                ("advisory", "severity", "deadline", "state"),
                (_adv_words(f) for f in report.advisories),
            )
        else:
            lines.append("No advisory affected this manifest at that time.")
        lines.append("")
    lines += ["## Audit events", "", f"Chain: {_chain_words(report)}.", ""]
    if report.events:
        lines += _md_table(
            ("seq", "at", "actor", "action", "run", "hash"),
            (
                (e.seq, isoformat(e.at), e.actor, e.action, e.flow_run_id or "-", f"`{e.hash}`")
                for e in report.events
            ),
        )
    return lines


def _text_table(head: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    cells = [list(head), *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(head))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]


def _run_text(run: ReportRun | None) -> str:
    if run is None:
        return "not recorded"
    parts = [run.flow_run_id]
    if run.started_by:
        parts.append(f"started by {run.started_by}")
    if run.outcome:
        parts.append(run.outcome)
    if run.link:
        parts.append(run.link)
    return ", ".join(parts)


def _text(report: AuditReport) -> list[str]:
    lines = [f"{report.instance} at {isoformat(report.at)}"]
    r = report.revision
    if r is None:
        lines.append("nothing was running (no deployed revision)")
    else:
        lines += [
            f"revision {r.number}  hash {r.hash}",
            f"  planned {isoformat(r.created_at)} by {r.created_by}"
            + (f", rollback of {r.rollback_of}" if r.rollback_of else ""),
            f"  deployed {'-' if r.deployed_at is None else isoformat(r.deployed_at)}",
            "  " + ", ".join(f"{c} {v}" for c, v in sorted(r.components.items())),
            f"planned by run:  {_run_text(report.planned_by)}",
            f"deployed by run: {_run_text(report.deployed_by)}",
            "",
            "approvals"
            + (
                ""
                if report.approvals_required is None
                else f" ({report.approvals_required} required)"
            ),
        ]
        if report.approvals:
            lines += _text_table(
                ("APPROVER", "DECISION", "IDENTITY", "AT", "SHOWN"),
                (
                    (
                        a.approver,
                        a.decision,
                        a.identity(),
                        isoformat(a.at),
                        f"r{a.shown_revision} {(a.shown_hash or '-')[:12]}",
                    )
                    for a in report.approvals
                ),
            )
        else:
            lines.append("  none recorded")
        lines += ["", "advisories"]
        if report.advisories:
            lines += _text_table(
                ("ADVISORY", "SEVERITY", "DEADLINE", "STATE"),
                (_adv_words(f) for f in report.advisories),
            )
        else:
            lines.append("  none affected it")
    lines += ["", f"audit events ({_chain_words(report)})"]
    lines += _text_table(
        ("SEQ", "AT", "ACTOR", "ACTION", "HASH"),
        ((e.seq, isoformat(e.at), e.actor, e.action, e.hash[:16]) for e in report.events),
    )
    return lines
