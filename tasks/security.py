"""Security tasks: read the compliance table, publish it, emit breach events,
record that security policy waived an approval."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import INPUTS, NO_CACHE, RUN_ID
from prefect.events import emit_event

from fleet.core.compliance import BREACH_EVENTS, ComplianceRow, PatchSelection, patch_selection
from fleet.core.durations import isoformat
from fleet.services import security as compliance
from fleet.services import windows

SECURITY_POLICY = "security-policy"


@task(name="read compliance", cache_policy=NO_CACHE)
def read_compliance(
    *, at: datetime | None, advisories: Collection[str] | None = None
) -> list[ComplianceRow]:
    return compliance.compliance_report(now=at, advisories=advisories)


@dataclass(frozen=True, slots=True)
class PatchScope:
    """What a patch rollout works on: its time, the findings and the selection."""

    now: datetime
    rows: tuple[ComplianceRow, ...]
    selection: PatchSelection
    # Auto-update instances outside their maintenance window: when it next opens.
    closed_windows: Mapping[str, datetime] = field(default_factory=dict)


# Cached for the run: a suspended run resumes from the top, after some fixes
# have landed, and must find the selection it started with.
@task(name="select patch", cache_policy=INPUTS + RUN_ID, persist_result=True)
def select_patch(*, advisory: str | None, at: datetime | None, flow_run_id: str) -> PatchScope:
    now = at or datetime.now(UTC)
    rows = compliance.compliance_report(now=now, advisories=[advisory] if advisory else None)
    closed = {name: opens for name, _, opens in windows.open_windows(now=now).closed}
    return PatchScope(now, tuple(rows), patch_selection(rows, advisory), closed)


def compliance_table(rows: Sequence[ComplianceRow], now: datetime) -> list[dict[str, str]]:
    return [r.to_row(now) for r in rows]


@task(name="publish compliance", cache_policy=NO_CACHE)
def publish_compliance(
    rows: Sequence[ComplianceRow], *, now: datetime, key: str, description: str
) -> None:
    table = compliance_table(rows, now) or [
        {
            "instance": "",
            "component": "",
            "version": "",
            "advisory": "",
            "severity": "",
            "deadline": "",
            "time left": "",
            "status": "no affected instance",
        }
    ]
    create_table_artifact(table, key=key, description=description)


@task(name="emit breach events", cache_policy=NO_CACHE)
def emit_breaches(rows: Sequence[ComplianceRow], *, now: datetime) -> list[dict[str, Any]]:
    """One event per breach (`fleet.advisory.overdue`, `fleet.advisory.enforced`,
    `fleet.advisory.no-fix`)."""
    sent = []
    for row in rows:
        name = BREACH_EVENTS.get(row.status)
        if name is None:
            continue
        payload = row.to_row(now)
        emit_event(
            event=name,
            resource={
                "prefect.resource.id": f"fleet.instance.{row.instance}",
                "prefect.resource.name": row.instance,
            },
            related=[
                {
                    "prefect.resource.id": f"fleet.advisory.{row.advisory}",
                    "prefect.resource.role": "advisory",
                    "prefect.resource.name": row.advisory,
                }
            ],
            payload=payload,
        )
        sent.append({"event": name, "instance": row.instance, "advisory": row.advisory})
    return sent


def waiver_comment(rows: Sequence[ComplianceRow], instance: str) -> str:
    found = [r for r in rows if r.instance == instance and r.enforced]
    if not found:
        return "approval waived by security policy: enforced security fix"
    parts = [
        f"{r.advisory} ({r.severity}, {r.status}"
        + ("" if r.deadline is None else f", deadline {isoformat(r.deadline)}")
        + ")"
        for r in found
    ]
    return "approval waived by security policy: enforced " + ", ".join(parts)
