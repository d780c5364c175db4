"""Durations (`30m`, `48h`, `7d`, `2w`) and time-zone-aware instants."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from fleet.core.errors import InputError, InvalidDuration

__all__ = ["format_duration", "isoformat", "parse_duration", "require_aware"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str | int | float | timedelta) -> timedelta:
    """Read `30m`, `48h`, `7d` or `2w` (a bare number is seconds).

    >>> parse_duration("48h")
    datetime.timedelta(days=2)
    """
    if isinstance(text, timedelta):
        return text
    if isinstance(text, bool):
        raise InvalidDuration(f"Invalid duration: {text!r}")
    if isinstance(text, int | float):
        if text < 0:
            raise InvalidDuration(f"Invalid duration: {text!r} (negative)")
        return timedelta(seconds=text)
    match = _DURATION.match(str(text))
    if not match:
        raise InvalidDuration(
            f"Invalid duration: {text!r} (expected a number and a unit: 30m, 48h, 7d, 2w)"
        )
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def format_duration(delta: timedelta) -> str:
    """Write a duration in the largest unit that divides it.

    >>> format_duration(timedelta(hours=48))
    '2d'
    """
    seconds = int(delta.total_seconds())
    for unit in ("w", "d", "h", "m"):
        if seconds and seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"


def require_aware(moment: datetime, *, what: str = "time") -> datetime:
    """Refuse a naive datetime: every instant in Fleet carries its zone.

    >>> require_aware(datetime(2026, 1, 1, tzinfo=timezone.utc)).year
    2026
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InputError(f"Invalid {what}: {moment.isoformat()!r} has no time zone")
    return moment


def isoformat(moment: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, the one form Fleet writes.

    >>> isoformat(datetime(2026, 11, 20, 10, tzinfo=timezone.utc))
    '2026-11-20T10:00:00Z'
    """
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
