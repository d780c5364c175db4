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
from urllib.parse import urlencode

from sqlalchemy import Engine

from fleet.core.durations import isoformat
from fleet.services import audit

__all__ = ["INSTANCE_PANELS", "Panel", "PanelProvider", "instance_panels", "recent_audit_events"]


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


INSTANCE_PANELS: list[PanelProvider] = [recent_audit_events]


def instance_panels(instance: str, engine: Engine) -> list[Panel]:
    return [p for provider in INSTANCE_PANELS if (p := provider(instance, engine)) is not None]
