"""Extra sections of the instance page, each from one service.

A panel provider takes the instance's name and the engine and returns a
`Panel` (a title, a table, an optional link) or None to show nothing. New
reports plug in here without touching the page: an audit report of the
instance, when the audit service has one, is one more provider in
`INSTANCE_PANELS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

from sqlalchemy import Engine

from fleet.core.durations import isoformat
from fleet.services import audit
from fleet.services.reports import audit_report

__all__ = [
    "INSTANCE_PANELS",
    "Panel",
    "PanelProvider",
    "audit_report_panel",
    "instance_panels",
    "recent_audit_events",
]


@dataclass(frozen=True, slots=True)
class Panel:
    title: str
    columns: Sequence[str]
    rows: Sequence[Sequence[str]] = ()
    link: tuple[str, str] | None = None  # (words, console path)
    empty: str = "Nothing yet."
    text: str = ""  # a report as preformatted text, shown under the table


PanelProvider = Callable[[str, Engine], "Panel | None"]


def recent_audit_events(instance: str, engine: Engine) -> Panel:
    """The instance's latest audit events, newest first."""
    subject = f"instance:{instance}"
    found, more = audit.search(subject=subject, limit=15, engine=engine)
    rows = [
        (str(e.seq), isoformat(e.at)[:19].replace("T", " "), e.actor, e.action, e.flow_run_id or "")
        for e in found
    ]
    return Panel(
        "Audit events",
        ("seq", "at", "actor", "action", "flow run"),
        rows,
        link=("All of them in the audit log", "/console/audit?" + urlencode({"subject": subject}))
        if more or rows
        else None,
        empty="No audit event names this instance.",
    )


def _short(moment: datetime | None) -> str:
    return "" if moment is None else isoformat(moment)[:19].replace("T", " ")


def audit_report_panel(instance: str, engine: Engine) -> Panel:
    """`fleet audit report` for now: who approved what runs, through which runs, and
    what is open against it (the whole report as text under the table)."""
    found = audit_report(instance, at=datetime.now(UTC), engine=engine)
    rows: list[tuple[str, str]] = []
    r = found.revision
    if r is not None:
        rows.append(
            ("running", f"revision {r.number} ({r.hash[:12]}), deployed {_short(r.deployed_at)}")
        )
        for label, run in (
            ("planned by run", found.planned_by),
            ("deployed by run", found.deployed_by),
        ):
            rows.append((label, "not recorded" if run is None else run.flow_run_id))
        for a in found.approvals:
            rows.append(
                (
                    f"{a.decision} ({a.identity()})",
                    f"{a.approver} at {_short(a.at)}, shown revision {a.shown_revision}",
                )
            )
        for f in found.advisories:
            state = "risk accepted" if f.acceptance else ("enforced" if f.enforced else "open")
            rows.append(
                (
                    f"advisory {f.advisory.id}",
                    f"{f.advisory.severity} on {f.advisory.component} {f.version}: {state}",
                )
            )
        chain = found.chain
        rows.append(("audit chain", "no events" if chain is None else str(chain)))
    return Panel(
        "Audit report (now)",
        ("what", "record"),
        rows,
        empty="Nothing Fleet deployed is running on this instance.",
        text="" if r is None else found.to_text(),
    )


INSTANCE_PANELS: list[PanelProvider] = [audit_report_panel, recent_audit_events]


def instance_panels(instance: str, engine: Engine) -> list[Panel]:
    return [p for provider in INSTANCE_PANELS if (p := provider(instance, engine)) is not None]
