"""Core objects with sensible defaults, so each test states only what matters."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from fleet.core.advisories import Advisory, AffectedRange, RiskAcceptance, Severity
from fleet.core.channels import Channel, MaintenanceWindow, Policy
from fleet.core.instances import Instance
from fleet.core.pins import Pin, PinScope
from fleet.core.state import FleetState
from fleet.core.versions import ComponentVersion, Registry

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
LONG_AGO = datetime(2026, 1, 1, tzinfo=UTC)


def at(text: str) -> datetime:
    """`2026-11-20T10:00` (UTC) as an aware datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def cv(
    component: str,
    version: str,
    *,
    released_at: datetime = LONG_AGO,
    requires: Mapping[str, str] | None = None,
    yanked: bool = False,
    yanked_reason: str | None = None,
) -> ComponentVersion:
    return ComponentVersion(
        component=component,
        version=Version(version),
        released_at=released_at,
        requires={k: SpecifierSet(v) for k, v in (requires or {}).items()},
        yanked=yanked,
        yanked_reason=yanked_reason,
    )


def versions(component: str, *texts: str) -> list[ComponentVersion]:
    return [cv(component, t) for t in texts]


def channel(
    name: str = "stable",
    policy: Policy | str = Policy.AUTO_UPDATE,
    *,
    constraint: str = "",
    allow_prereleases: bool = False,
    soak: timedelta = timedelta(0),
    window: MaintenanceWindow | None = None,
    approvals_required: int = 1,
) -> Channel:
    return Channel(
        name=name,
        policy=Policy(policy),
        constraint=SpecifierSet(constraint),
        allow_prereleases=allow_prereleases,
        soak=soak,
        maintenance_window=window,
        approvals_required=approvals_required,
    )


def instance(
    name: str = "acme-prod",
    *,
    channel: str = "stable",
    current: Mapping[str, str] | None = None,
    policy_override: Policy | str | None = None,
    labels: Mapping[str, str] | None = None,
) -> Instance:
    return Instance(
        name=name,
        customer=name.split("-")[0].title(),
        channel=channel,
        current={k: Version(v) for k, v in (current or {}).items()},
        labels=dict(labels or {}),
        policy_override=None if policy_override is None else Policy(policy_override),
    )


def pin(
    scope: str,
    component: str,
    spec: str,
    *,
    reason: str = "test pin",
    expires_at: datetime | None = None,
) -> Pin:
    return Pin(
        scope=PinScope.parse(scope),
        component=component,
        spec=SpecifierSet(spec),
        reason=reason,
        author="ops@vendor.example",
        created_at=LONG_AGO,
        expires_at=expires_at,
    )


def advisory(
    id: str = "FLEET-2026-0001",
    component: str = "api",
    *,
    severity: Severity | str = Severity.CRITICAL,
    published_at: datetime = NOW - timedelta(hours=2),
    events: Sequence[Mapping[str, str]] = (),
    versions: Sequence[str] = (),
) -> Advisory:
    ranges = (
        (AffectedRange.parse({"type": "ECOSYSTEM", "events": [dict(e) for e in events]}),)
        if events
        else ()
    )
    return Advisory(
        id=id,
        component=component,
        severity=Severity(severity),
        published_at=published_at,
        ranges=ranges,
        versions=frozenset(Version(v) for v in versions),
    )


def acceptance(
    instance: str, advisory: str = "FLEET-2026-0001", *, until: datetime
) -> RiskAcceptance:
    return RiskAcceptance(
        instance=instance,
        advisory=advisory,
        by="ciso@vendor.example",
        reason="WAF rule in place",
        until=until,
    )


def state(
    *,
    components: Sequence[str] = ("api", "web"),
    registry: Sequence[ComponentVersion] = (),
    channels: Sequence[Channel] = (),
    instances: Sequence[Instance] = (),
    pins: Sequence[Pin] = (),
    advisories: Sequence[Advisory] = (),
    risk_acceptances: Sequence[RiskAcceptance] = (),
) -> FleetState:
    chans = list(channels) or [channel()]
    return FleetState(
        components=tuple(components),
        registry=Registry(registry),
        channels={c.name: c for c in chans},
        instances=list(instances),
        pins=list(pins),
        advisories=list(advisories),
        risk_acceptances=list(risk_acceptances),
    )


# Real OSV records as published for PyPI packages (tests/data/osv/README.md),
# and the components the tests map their packages to.
OSV_DATA = Path(__file__).resolve().parent / "data" / "osv"
OSV_RECORDS: dict[str, dict[str, Any]] = {
    path.stem: json.loads(path.read_text(encoding="utf-8"))
    for path in sorted(OSV_DATA.glob("*.json"))
}
OSV_COMPONENTS = {
    "cryptography": "crypto",
    "django": "web",
    "ecdsa": "signing",
    "flask": "app",
    "jinja2": "templates",
    "pillow": "images",
    "pyyaml": "yaml",
    "requests": "http",
    "urllib3": "http-pool",
    "werkzeug": "wsgi",
}
