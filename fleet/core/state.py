"""Everything the planner reads, in one value."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from fleet.core.advisories import DEFAULT_DEADLINES, Advisory, RiskAcceptance, Severity
from fleet.core.channels import Channel
from fleet.core.instances import Instance
from fleet.core.pins import Pin
from fleet.core.versions import Registry

__all__ = ["FleetState"]


@dataclass(frozen=True, slots=True)
class FleetState:
    """A fleet as the planner sees it: components in resolution order and all rules."""

    components: tuple[str, ...]
    registry: Registry
    channels: Mapping[str, Channel]
    instances: Sequence[Instance]
    pins: Sequence[Pin] = ()
    advisories: Sequence[Advisory] = ()
    risk_acceptances: Sequence[RiskAcceptance] = ()
    deadlines: Mapping[Severity, timedelta | None] = field(
        default_factory=lambda: dict(DEFAULT_DEADLINES)
    )
