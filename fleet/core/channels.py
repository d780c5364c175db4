"""Update channels: policy, constraint, pre-releases, soak, maintenance window."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from packaging.specifiers import SpecifierSet

from fleet.core.errors import InputError

__all__ = ["Channel", "MaintenanceWindow", "Policy", "effective_policy"]


class Policy(StrEnum):
    AUTO_UPDATE = "auto-update"
    MANUAL_APPROVAL = "manual-approval"
    FROZEN = "frozen"


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    """A recurring window: opens at each `cron` time (in `timezone`), lasts `duration`."""

    cron: str
    duration: timedelta
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        try:
            zone = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise InputError(f"Invalid time zone: {self.timezone!r}") from exc
        try:
            CronSim(self.cron, datetime(2026, 1, 1, tzinfo=zone))
        except CronSimError as exc:
            raise InputError(f"Invalid cron expression: {self.cron!r} ({exc})") from exc
        if self.duration <= timedelta(0):
            raise InputError(f"Invalid window duration: {self.duration!r} (must be positive)")

    def _opening_after(self, moment: datetime) -> datetime:
        local = moment.astimezone(ZoneInfo(self.timezone))
        return next(CronSim(self.cron, local))

    def open_since(self, now: datetime) -> datetime | None:
        """When the window that is open at `now` opened, or None when closed.

        >>> w = MaintenanceWindow("0 2 * * *", timedelta(hours=4), "UTC")
        >>> w.open_since(datetime(2026, 11, 26, 3, tzinfo=timezone.utc)).hour
        2
        """
        opening = self._opening_after(now - self.duration)
        return opening if opening <= now else None

    def is_open(self, now: datetime) -> bool:
        return self.open_since(now) is not None

    def next_open(self, now: datetime) -> datetime:
        """The start of the window open at `now`, else of the next one."""
        return self.open_since(now) or self._opening_after(now)


@dataclass(frozen=True, slots=True)
class Channel:
    name: str
    policy: Policy
    constraint: SpecifierSet = field(default_factory=SpecifierSet)
    allow_prereleases: bool = False
    soak: timedelta = timedelta(0)
    maintenance_window: MaintenanceWindow | None = None
    approvals_required: int = 1
    approval_timeout: timedelta = timedelta(hours=72)
    # Only verified approvals (an API token, a one-time approval code) count;
    # self-declared ones (a name typed into a form) are recorded, not counted.
    verified_approvals: bool = False

    def __post_init__(self) -> None:
        if self.approvals_required < 1:
            raise InputError(
                f"Invalid approvals_required: {self.approvals_required!r} (at least 1)"
            )


def effective_policy(channel: Channel, policy_override: Policy | None) -> Policy:
    """The instance's override when it has one, else its channel's policy.

    >>> effective_policy(Channel("stable", Policy.AUTO_UPDATE), Policy.FROZEN)
    <Policy.FROZEN: 'frozen'>
    """
    return policy_override if policy_override is not None else channel.policy
