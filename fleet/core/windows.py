"""Which auto-update instances may be updated now: their maintenance window is open.

Only instances whose effective policy is auto-update take part; a channel
without a maintenance window is always open.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fleet.core.channels import Policy, effective_policy
from fleet.core.durations import require_aware
from fleet.core.state import FleetState

__all__ = ["WindowSelection", "auto_update_selection"]


@dataclass(frozen=True, slots=True)
class WindowSelection:
    """`open`: instances to update now; `closed`: (instance, channel, next opening)."""

    at: datetime
    open: tuple[str, ...] = ()
    closed: tuple[tuple[str, str, datetime], ...] = ()


def auto_update_selection(state: FleetState, now: datetime) -> WindowSelection:
    """Split the auto-update instances by whether their window is open at `now`.

    >>> auto_update_selection(state, datetime(2026, 11, 26, 3, tzinfo=UTC)).open[:2]
    ('acme-prod', 'acme-staging')
    """
    require_aware(now, what="window time")
    opened: list[str] = []
    closed: list[tuple[str, str, datetime]] = []
    for inst in state.instances:
        channel = state.channels[inst.channel]
        if effective_policy(channel, inst.policy_override) is not Policy.AUTO_UPDATE:
            continue
        window = channel.maintenance_window
        if window is None or window.is_open(now):
            opened.append(inst.name)
        else:
            closed.append((inst.name, channel.name, window.next_open(now)))
    return WindowSelection(now, tuple(opened), tuple(closed))
