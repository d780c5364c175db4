"""The fleet as stored: rows to core values and back.

`load_state` reads everything the planner needs as a `FleetState`.
`values_of_*` turn validated fleet-file entries, as `fleet_file_from_state`
writes them (versions and specifiers normalised), into column values for
inserts and updates. Listing order is stable: components by position,
channels and instances by name, versions by component then version, pins
by id, advisories by id then component, risk acceptances by instance then
advisory. Retired instances are left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from packaging.version import Version
from sqlalchemy import Connection, Row, bindparam, select

from fleet.core.advisories import (
    DEFAULT_DEADLINES,
    Advisory,
    AffectedRange,
    RiskAcceptance,
    Severity,
    parse_versions,
)
from fleet.core.channels import Channel, MaintenanceWindow, Policy
from fleet.core.fleetfile import (
    AdvisoryEntry,
    ChannelEntry,
    InstanceEntry,
    PinEntry,
    RiskAcceptanceEntry,
    VersionEntry,
)
from fleet.core.instances import Instance
from fleet.core.pins import Pin, PinScope
from fleet.core.state import FleetState
from fleet.core.versions import ComponentVersion, Registry, parse_specifier
from fleet.db.models import (
    AdvisoryRow,
    ChannelRow,
    ComponentRow,
    InstanceRow,
    PinRow,
    RiskAcceptanceRow,
    SecurityDeadlineRow,
    VersionRow,
    table_of,
)

__all__ = [
    "COMPONENT",
    "TABLES",
    "StoredFleet",
    "advisory_of",
    "load_deadlines",
    "load_state",
    "load_stored",
    "pin_of",
    "risk_of",
    "values_of_advisory",
    "values_of_channel",
    "values_of_instance",
    "values_of_pin",
    "values_of_risk",
    "values_of_version",
]

COMPONENT = table_of(ComponentRow)
VERSION = table_of(VersionRow)
CHANNEL = table_of(ChannelRow)
INSTANCE = table_of(InstanceRow)
PIN = table_of(PinRow)
ADVISORY = table_of(AdvisoryRow)
RISK = table_of(RiskAcceptanceRow)
DEADLINE = table_of(SecurityDeadlineRow)

# An instance's row by `name`, read by every deploy's record (built once:
# building a statement costs more CPU than running it).
INSTANCE_NAMED = select(INSTANCE).where(INSTANCE.c.name == bindparam("name"))
TABLES = {
    "version": VERSION,
    "channel": CHANNEL,
    "instance": INSTANCE,
    "pin": PIN,
    "advisory": ADVISORY,
    "risk": RISK,
}


# --- rows to core values ------------------------------------------------------


def _version(row: Row[Any]) -> ComponentVersion:
    return ComponentVersion(
        component=row.component,
        version=Version(row.version),
        released_at=row.released_at,
        artifact_url=row.artifact_url,
        sha256=row.sha256,
        requires={c: parse_specifier(s) for c, s in (row.requires or {}).items()},
        yanked=row.yanked,
        yanked_reason=row.yanked_reason,
    )


def _channel(row: Row[Any]) -> Channel:
    window = None
    if row.window_cron is not None:
        window = MaintenanceWindow(
            row.window_cron,
            timedelta(seconds=row.window_duration_seconds or 0),
            row.window_timezone or "UTC",
        )
    return Channel(
        name=row.name,
        policy=Policy(row.policy),
        constraint=parse_specifier(row.constraint or ""),
        allow_prereleases=row.allow_prereleases,
        soak=timedelta(seconds=row.soak_seconds),
        maintenance_window=window,
        approvals_required=row.approvals_required,
        approval_timeout=timedelta(seconds=row.approval_timeout_seconds),
        verified_approvals=row.verified_approvals,
    )


def _instance(row: Row[Any]) -> Instance:
    return Instance(
        name=row.name,
        customer=row.customer,
        channel=row.channel,
        current={c: Version(v) for c, v in (row.current or {}).items()},
        labels=dict(row.labels or {}),
        policy_override=None if row.policy_override is None else Policy(row.policy_override),
        target=row.target,
    )


def pin_of(row: Row[Any]) -> Pin:
    return Pin(
        scope=PinScope.parse(row.scope),
        component=row.component,
        spec=parse_specifier(row.spec),
        reason=row.reason,
        author=row.author,
        created_at=row.created_at,
        expires_at=row.expires_at,
    )


def advisory_of(row: Row[Any]) -> Advisory:
    return Advisory(
        id=row.advisory_id,
        component=row.component,
        severity=Severity(row.severity),
        published_at=row.published_at,
        ranges=tuple(AffectedRange.parse(r) for r in row.ranges or ()),
        versions=parse_versions(row.versions or ()),
        aliases=tuple(row.aliases or ()),
        summary=row.summary,
    )


def risk_of(row: Row[Any]) -> RiskAcceptance:
    return RiskAcceptance(
        instance=row.instance, advisory=row.advisory, by=row.by, reason=row.reason, until=row.until
    )


@dataclass(frozen=True, slots=True)
class StoredFleet:
    """The fleet's rows as read, with the ids that updates and deletes need."""

    state: FleetState
    ids: Mapping[str, Mapping[tuple[str, ...], int]]
    retired: Mapping[str, int]
    deployed: Mapping[str, int]


def load_deadlines(session: Connection) -> dict[Severity, timedelta | None]:
    out = dict(DEFAULT_DEADLINES)
    for row in session.execute(select(DEADLINE)):
        out[Severity(row.severity)] = (
            None if row.seconds is None else timedelta(seconds=row.seconds)
        )
    return out


def load_stored(session: Connection) -> StoredFleet:
    """Everything a fleet file describes, as core values, plus the row ids by key."""
    components = tuple(
        session.execute(select(COMPONENT.c.name).order_by(COMPONENT.c.position)).scalars()
    )
    order = {name: i for i, name in enumerate(components)}
    version_rows = list(session.execute(select(VERSION)).all())
    version_rows.sort(key=lambda r: (order.get(r.component, len(order)), r.component))
    versions = [_version(r) for r in version_rows]
    channel_rows = session.execute(select(CHANNEL).order_by(CHANNEL.c.name)).all()
    instance_rows = session.execute(select(INSTANCE).order_by(INSTANCE.c.name)).all()
    live = [r for r in instance_rows if r.retired_at is None]
    pin_rows = session.execute(select(PIN).order_by(PIN.c.id)).all()
    advisory_rows = session.execute(
        select(ADVISORY).order_by(ADVISORY.c.advisory_id, ADVISORY.c.component)
    ).all()
    risk_rows = session.execute(select(RISK).order_by(RISK.c.instance, RISK.c.advisory)).all()
    state = FleetState(
        components=components,
        registry=Registry(versions),
        channels={r.name: _channel(r) for r in channel_rows},
        instances=[_instance(r) for r in live],
        pins=[pin_of(r) for r in pin_rows],
        advisories=[advisory_of(r) for r in advisory_rows],
        risk_acceptances=[risk_of(r) for r in risk_rows],
        deadlines=load_deadlines(session),
    )
    ids: dict[str, dict[tuple[str, ...], int]] = {
        "version": {(r.component, r.version): r.id for r in version_rows},
        "channel": {(r.name,): r.id for r in channel_rows},
        "instance": {(r.name,): r.id for r in live},
        "pin": {(r.scope, r.component, r.spec): r.id for r in pin_rows},
        "advisory": {(r.advisory_id, r.component): r.id for r in advisory_rows},
        "risk": {(r.instance, r.advisory): r.id for r in risk_rows},
    }
    retired = {r.name: r.id for r in instance_rows if r.retired_at is not None}
    deployed = {r.name: r.current_revision for r in live if r.current_revision is not None}
    return StoredFleet(state, ids, retired, deployed)


def load_state(session: Connection) -> FleetState:
    """The fleet as the planner sees it."""
    return load_stored(session).state


# --- fleet-file entries to column values -----------------------------------------


def values_of_version(entry: VersionEntry) -> dict[str, Any]:
    return {
        "component": entry.component,
        "version": str(Version(entry.version)),
        "released_at": entry.released_at,
        "artifact_url": entry.artifact.url if entry.artifact else None,
        "sha256": entry.artifact.sha256 if entry.artifact else None,
        "requires": {c: str(parse_specifier(s)) for c, s in entry.requires.items()},
        "yanked": entry.yanked,
        "yanked_reason": entry.yanked_reason,
    }


def _seconds(delta: timedelta) -> int:
    return int(delta.total_seconds())


def values_of_channel(entry: ChannelEntry) -> dict[str, Any]:
    window = entry.maintenance_window
    return {
        "name": entry.name,
        "policy": entry.policy.value,
        "constraint": str(parse_specifier(entry.constraint or "")),
        "allow_prereleases": entry.allow_prereleases,
        "soak_seconds": _seconds(entry.soak),
        "window_cron": window.cron if window else None,
        "window_duration_seconds": _seconds(window.duration) if window else None,
        "window_timezone": window.timezone if window else None,
        "approvals_required": entry.approvals_required,
        "approval_timeout_seconds": _seconds(entry.approval_timeout),
        "verified_approvals": entry.verified_approvals,
    }


def values_of_instance(entry: InstanceEntry) -> dict[str, Any]:
    return {
        "name": entry.name,
        "customer": entry.customer,
        "channel": entry.channel,
        "labels": dict(entry.labels),
        "policy_override": None if entry.policy_override is None else entry.policy_override.value,
        "target": entry.target,
        "current": dict(entry.current),
    }


def values_of_pin(entry: PinEntry) -> dict[str, Any]:
    return {
        "scope": entry.scope,
        "component": entry.component,
        "spec": str(parse_specifier(entry.spec)),
        "reason": entry.reason,
        "author": entry.author,
        "created_at": entry.created_at,
        "expires_at": entry.expires_at,
    }


def values_of_advisory(entry: AdvisoryEntry) -> dict[str, Any]:
    return {
        "advisory_id": entry.id,
        "component": entry.component,
        "severity": entry.severity.value,
        "published_at": entry.published_at,
        "aliases": list(entry.aliases),
        "summary": entry.summary,
        "ranges": [r.to_data() for r in entry.ranges],
        "versions": list(entry.versions),
    }


def values_of_risk(entry: RiskAcceptanceEntry) -> dict[str, Any]:
    return {
        "instance": entry.instance,
        "advisory": entry.advisory,
        "by": entry.by,
        "reason": entry.reason,
        "until": entry.until,
    }
