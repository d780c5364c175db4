"""Compliance: which instances run a version an advisory affects, by when each
must be fixed, and which of them a patch rollout moves now.

A row per (instance, component, advisory) that affects what the instance
runs, read off the plan's advisory flags: the plan, the compliance view and
the scan see the same thing because they are the same computation. Its
status, in order of precedence:
- `risk-accepted`: an active risk acceptance suspends enforcement;
- `no-fix`: enforced, but no version qualifies as a fix (none released yet);
- `overdue`: the deadline has passed (the fix is enforced);
- `enforced`: a critical advisory, enforced at once, before its deadline;
- `report-only`: a severity without a deadline (low);
- `due`: before the deadline; the fix follows the instance's normal policy.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from packaging.version import Version

from fleet.core.advisories import RiskAcceptance, Severity
from fleet.core.durations import format_duration, isoformat, require_aware
from fleet.core.plan import AdvisoryFlag, PlanMemo, compile_plan
from fleet.core.state import FleetState

__all__ = [
    "BREACH_EVENTS",
    "ComplianceRow",
    "ComplianceStatus",
    "PatchSelection",
    "compliance_rows",
    "patch_selection",
    "status_of",
    "time_left",
]


class ComplianceStatus(StrEnum):
    RISK_ACCEPTED = "risk-accepted"
    NO_FIX = "no-fix"
    OVERDUE = "overdue"
    ENFORCED = "enforced"
    REPORT_ONLY = "report-only"
    DUE = "due"


# The Prefect event each breach emits (an automation can notify on them).
BREACH_EVENTS: Mapping[ComplianceStatus, str] = {
    ComplianceStatus.OVERDUE: "fleet.advisory.overdue",
    ComplianceStatus.ENFORCED: "fleet.advisory.enforced",
    ComplianceStatus.NO_FIX: "fleet.advisory.no-fix",
}


@dataclass(frozen=True, slots=True)
class ComplianceRow:
    """One advisory affecting one component of one instance."""

    instance: str
    channel: str
    policy: str
    component: str
    version: Version
    advisory: str
    severity: Severity
    deadline: datetime | None
    status: ComplianceStatus
    risk_acceptance: RiskAcceptance | None = None

    @property
    def enforced(self) -> bool:
        """Enforced now, with a fix to deploy (a patch rollout moves the instance)."""
        return self.status in (ComplianceStatus.OVERDUE, ComplianceStatus.ENFORCED)

    def to_row(self, now: datetime) -> dict[str, str]:
        """The row of the compliance table artifact."""
        status = str(self.status)
        if self.risk_acceptance is not None:
            ra = self.risk_acceptance
            status += f" by {ra.by} until {isoformat(ra.until)}"
        return {
            "instance": self.instance,
            "component": self.component,
            "version": str(self.version),
            "advisory": self.advisory,
            "severity": str(self.severity),
            "deadline": "" if self.deadline is None else isoformat(self.deadline),
            "time left": time_left(self.deadline, now),
            "status": status,
        }


def time_left(deadline: datetime | None, now: datetime) -> str:
    """`3h`, `overdue 2d`, or empty without a deadline (rounded down to minutes).

    >>> time_left(datetime(2026, 11, 27, tzinfo=UTC), datetime(2026, 11, 26, tzinfo=UTC))
    '1d'
    """
    if deadline is None:
        return ""
    delta = deadline - now
    late = delta < timedelta(0)
    minutes = timedelta(minutes=int(abs(delta).total_seconds() // 60))
    words = format_duration(minutes) if minutes else "0m"
    return f"overdue {words}" if late else words


def status_of(flag: AdvisoryFlag) -> ComplianceStatus:
    """The compliance status of one of the plan's advisory flags.

    >>> [str(status_of(f)) for f in compile_plan(state, now).instances[0].advisories]
    ['overdue']
    """
    if flag.risk_acceptance is not None:
        return ComplianceStatus.RISK_ACCEPTED
    if flag.no_fix:
        return ComplianceStatus.NO_FIX
    if flag.overdue:
        return ComplianceStatus.OVERDUE
    if flag.enforced:
        return ComplianceStatus.ENFORCED
    if flag.deadline is None:
        return ComplianceStatus.REPORT_ONLY
    return ComplianceStatus.DUE


def compliance_rows(
    state: FleetState,
    now: datetime,
    *,
    advisories: Collection[str] | None = None,
    instances: Collection[str] | None = None,
    memo: PlanMemo | None = None,
) -> list[ComplianceRow]:
    """Every (instance, component, advisory) that affects what instances run now,
    in fleet order; `advisories` (ids) and `instances` narrow it.

    >>> [str(r.status) for r in compliance_rows(state, now, instances=["acme-prod"])]
    ['overdue']
    """
    require_aware(now, what="compliance time")
    plan = compile_plan(state, now, instances=instances or None, memo=memo)
    running = {i.name: i.current for i in state.instances}
    rows: list[ComplianceRow] = []
    for item in plan.instances:
        current = running[item.instance]
        for flag in item.advisories:
            adv = flag.advisory
            if not flag.running or (advisories and adv.id not in advisories):
                continue
            rows.append(
                ComplianceRow(
                    item.instance,
                    item.channel,
                    str(item.policy),
                    adv.component,
                    current[adv.component],
                    adv.id,
                    adv.severity,
                    flag.deadline,
                    status_of(flag),
                    flag.risk_acceptance,
                )
            )
    return rows


@dataclass(frozen=True, slots=True)
class PatchSelection:
    """What a patch rollout does with each affected instance."""

    advisories: tuple[str, ...]
    enforce: tuple[str, ...] = ()
    normal: tuple[str, ...] = ()
    accepted: tuple[ComplianceRow, ...] = ()
    report_only: tuple[str, ...] = ()
    deadlines: Mapping[str, str] = field(default_factory=dict)

    @property
    def instances(self) -> tuple[str, ...]:
        """The instances to plan (enforced first, then those on their normal policy)."""
        return self.enforce + self.normal


def patch_selection(rows: Iterable[ComplianceRow], advisory: str | None = None) -> PatchSelection:
    """Split the affected instances for a patch rollout of `advisory`, or of every
    advisory enforced now when it is None.

    An instance is enforced when one selected advisory is enforced on it;
    else it follows its normal policy when one is due; an instance whose
    only selected advisories are risk-accepted is skipped (and reported).
    `deadlines` holds per instance a sentence naming each advisory's deadline.

    >>> patch_selection(compliance_rows(state, now)).enforce
    ('acme-prod', 'globex-us', 'hooli-prod', 'initech-prod')
    """
    rows = list(rows)
    if advisory is None:
        ids = tuple(sorted({r.advisory for r in rows if r.enforced}))
    else:
        ids = (advisory,)
    selected = [r for r in rows if r.advisory in ids]
    order: list[str] = []
    by_instance: dict[str, list[ComplianceRow]] = {}
    for row in selected:
        if row.instance not in by_instance:
            order.append(row.instance)
        by_instance.setdefault(row.instance, []).append(row)
    enforce: list[str] = []
    normal: list[str] = []
    report: list[str] = []
    accepted: list[ComplianceRow] = []
    deadlines: dict[str, str] = {}
    for name in order:
        found = by_instance[name]
        if any(r.enforced for r in found):
            enforce.append(name)
        elif any(r.status is ComplianceStatus.DUE for r in found):
            normal.append(name)
        elif any(r.status is ComplianceStatus.REPORT_ONLY for r in found):
            report.append(name)
        accepted.extend(r for r in found if r.status is ComplianceStatus.RISK_ACCEPTED)
        deadlines[name] = _deadline_words(found)
    return PatchSelection(
        ids, tuple(enforce), tuple(normal), tuple(accepted), tuple(report), deadlines
    )


def _deadline_words(rows: Sequence[ComplianceRow]) -> str:
    parts = []
    for r in rows:
        when = "no deadline" if r.deadline is None else f"deadline **{isoformat(r.deadline)}**"
        parts.append(
            f"Advisory **{r.advisory}** ({r.severity}) affects {r.component} {r.version}: "
            f"{when}, {r.status}."
        )
    return " ".join(parts)
