"""Compliance: which instances run versions that advisories affect, and by when
each must be fixed (the plan's advisory flags, one row per instance and advisory,
with the status `fleet.core.compliance` gives them)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from fleet.core.advisories import Severity
from fleet.core.compliance import status_of
from fleet.core.durations import isoformat
from fleet.core.errors import InputError
from fleet.core.plan import compile_plan
from fleet.services._common import now_or_clock
from fleet.services.plans import current_memo

__all__ = ["Exposure", "exposures"]


@dataclass(frozen=True, slots=True)
class Exposure:
    instance: str
    channel: str
    advisory: str
    component: str
    severity: str
    deadline: datetime | None
    overdue: bool
    enforced: bool
    fixed_by_plan: bool
    running: str | None
    risk_accepted: dict[str, Any] | None
    status: str = "due"
    no_fix: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "instance": self.instance,
            "channel": self.channel,
            "advisory": self.advisory,
            "component": self.component,
            "severity": self.severity,
            "deadline": None if self.deadline is None else isoformat(self.deadline),
            "overdue": self.overdue,
            "enforced": self.enforced,
            "status": self.status,
            "no_fix": self.no_fix,
            "fixed_by_plan": self.fixed_by_plan,
            "running": self.running,
            "risk_accepted": self.risk_accepted,
        }


def exposures(
    *,
    severity: str | None = None,
    overdue_only: bool = False,
    now: datetime | None = None,
    engine: Engine | None = None,
) -> list[Exposure]:
    """Affected instances, soonest deadline first (report-only advisories last)."""
    now = now_or_clock(now)
    if severity is not None:
        try:
            Severity(severity)
        except ValueError:
            raise InputError(f"Invalid severity: {severity!r}") from None
    memo = current_memo(engine=engine)
    state = memo.state
    current = {i.name: i.current for i in state.instances}
    plan = compile_plan(state, now, memo=memo)
    out = []
    for item in plan.instances:
        for flag in item.advisories:
            a = flag.advisory
            if not flag.running or (severity is not None and str(a.severity) != severity):
                continue
            overdue = flag.overdue
            if overdue_only and not overdue:
                continue
            running = current.get(item.instance, {}).get(a.component)
            ra = flag.risk_acceptance
            out.append(
                Exposure(
                    item.instance,
                    item.channel,
                    a.id,
                    a.component,
                    str(a.severity),
                    flag.deadline,
                    overdue,
                    flag.enforced,
                    flag.fixed_by_plan,
                    None if running is None else str(running),
                    None
                    if ra is None
                    else {"by": ra.by, "reason": ra.reason, "until": isoformat(ra.until)},
                    str(status_of(flag)),
                    flag.no_fix,
                )
            )
    out.sort(key=lambda e: (e.deadline is None, e.deadline or now, e.instance, e.advisory))
    return out
