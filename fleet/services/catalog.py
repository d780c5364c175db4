"""Single changes to what the fleet is: publish a version, set a channel, set an
instance's policy override.

Each is a one-entry fleet file applied without pruning, so it goes through
the same checks, the same per-object audit events and the same "write only
the differences" as `fleet apply`: the fleet that would result is validated
whole before anything is written.
"""

from __future__ import annotations

from datetime import datetime

from packaging.version import Version
from sqlalchemy import Engine

from fleet.core.channels import Policy
from fleet.core.errors import ConflictError, NotFoundError
from fleet.core.fleetfile import ChannelEntry, FleetFile, InstanceEntry, VersionEntry
from fleet.services.fleet import ApplyResult, apply_fleet_file, export_fleet_file

__all__ = ["publish_version", "set_channel", "set_policy_override"]


def _apply(
    current: FleetFile,
    *,
    actor: str,
    now: datetime | None,
    engine: Engine | None,
    **sections: object,
) -> ApplyResult:
    one = FleetFile.model_validate(
        {"components": list(current.components), **sections}, from_attributes=True
    )
    return apply_fleet_file(one, actor=actor, now=now, engine=engine)


def publish_version(
    entry: VersionEntry,
    *,
    actor: str,
    now: datetime | None = None,
    engine: Engine | None = None,
) -> VersionEntry:
    """Add a new version to the registry; a version that exists is a conflict."""
    current = export_fleet_file(engine=engine)
    wanted = Version(entry.version)
    for known in current.versions:
        if known.component == entry.component and Version(known.version) == wanted:
            raise ConflictError(f"Version {entry.component} {entry.version} exists already")
    _apply(current, versions=[entry], actor=actor, now=now, engine=engine)
    stored = export_fleet_file(engine=engine)
    return next(
        v
        for v in stored.versions
        if v.component == entry.component and Version(v.version) == wanted
    )


def set_channel(
    entry: ChannelEntry,
    *,
    actor: str,
    now: datetime | None = None,
    engine: Engine | None = None,
) -> ApplyResult:
    """Create the channel or replace its settings (policy, constraint, soak, window ...)."""
    current = export_fleet_file(engine=engine)
    return _apply(current, channels=[entry], actor=actor, now=now, engine=engine)


def set_policy_override(
    instance: str,
    policy: Policy | None,
    *,
    actor: str,
    now: datetime | None = None,
    engine: Engine | None = None,
) -> InstanceEntry:
    """Set (or clear, with None) the instance's policy override."""
    current = export_fleet_file(engine=engine)
    found = next((i for i in current.instances if i.name == instance), None)
    if found is None:
        raise NotFoundError(f"Unknown instance: {instance!r}")
    changed = found.model_copy(update={"policy_override": policy})
    _apply(current, instances=[changed], actor=actor, now=now, engine=engine)
    return changed
