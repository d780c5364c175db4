"""Durations (`30m`, `48h`, `7d`, `2w`) and time-zone-aware instants, both bounded.

Fleet accepts instants from `EARLIEST` to `LATEST` and durations from zero to
`MAX_DURATION`, so that any accepted duration can be added to or taken from any
accepted instant without leaving the range Python can represent. Digits are
ASCII only (`int` and `float` would read `１h` as one hour).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

from fleet.core.errors import InputError, InvalidDuration

__all__ = [
    "EARLIEST",
    "LATEST",
    "MAX_DURATION",
    "check_instant",
    "format_duration",
    "isoformat",
    "parse_duration",
    "parse_instant",
    "require_aware",
]

MAX_DURATION = timedelta(days=3650)
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)

_DURATION = re.compile(r"[ \t]*([0-9]{1,15})(?:\.([0-9]{1,9}))?[ \t]*([smhdw])[ \t]*", re.ASCII)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_EXPECTED = "expected a number and a unit: 30m, 48h, 7d, 2w"
_LONGEST_TEXT = 64


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _bounded(seconds: float, text: object) -> timedelta:
    if not math.isfinite(seconds):
        raise InvalidDuration(f"Invalid duration: {_shown(text)} ({_EXPECTED})")
    if seconds < 0:
        raise InvalidDuration(f"Invalid duration: {_shown(text)} (negative)")
    if seconds > MAX_DURATION.total_seconds():
        raise InvalidDuration(
            f"Invalid duration: {_shown(text)} (longer than {format_duration(MAX_DURATION)}, "
            "the longest Fleet accepts)"
        )
    return timedelta(seconds=seconds)


def parse_duration(text: str | int | float | timedelta) -> timedelta:
    """Read `30m`, `48h`, `7d` or `2w`; `0` is no time; a bare number is seconds.

    Raises `InvalidDuration` (an `InputError`) for anything else: negative,
    not finite, non-ASCII digits, or longer than `MAX_DURATION`.

    >>> parse_duration("48h")
    datetime.timedelta(days=2)
    """
    if isinstance(text, timedelta):
        return _bounded(text.total_seconds(), format_duration(text))
    if isinstance(text, bool):
        raise InvalidDuration(f"Invalid duration: {text!r} ({_EXPECTED})")
    if isinstance(text, int | float):
        return _bounded(float(text) if abs(text) < 1e300 else math.inf, text)
    if not isinstance(text, str):
        raise InvalidDuration(f"Invalid duration: {_shown(text)} ({_EXPECTED})")
    if text.strip(" \t") == "0":
        return timedelta(0)
    match = _DURATION.fullmatch(text) if len(text) <= _LONGEST_TEXT else None
    if match is None:
        raise InvalidDuration(f"Invalid duration: {_shown(text)} ({_EXPECTED})")
    whole, fraction, unit = match.groups()
    number = float(f"{whole}.{fraction or 0}")
    return _bounded(number * _UNITS[unit], text)


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


def check_instant(moment: datetime, *, what: str = "time") -> datetime:
    """Refuse a naive instant or one outside `EARLIEST`..`LATEST`.

    >>> check_instant(datetime(2026, 1, 1, tzinfo=timezone.utc)).year
    2026
    """
    require_aware(moment, what=what)
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST <= utc < LATEST:
        raise InputError(
            f"Invalid {what}: {moment.isoformat()!r} is out of range (Fleet accepts "
            f"{isoformat(EARLIEST)} up to, not including, {isoformat(LATEST)})"
        )
    return moment


def parse_instant(text: str, *, what: str = "time") -> datetime:
    """Read an ISO 8601 time with a zone (`Z` or `+01:00`), within Fleet's range.

    >>> isoformat(parse_instant("2026-11-20T11:00:00+01:00"))
    '2026-11-20T10:00:00Z'
    """
    if not isinstance(text, str):
        raise InputError(f"Invalid {what}: {_shown(text)} (expected ISO 8601 with a zone)")
    try:
        if len(text) > _LONGEST_TEXT or not text.isascii():
            raise ValueError(text)
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError(
            f"Invalid {what}: {_shown(text)} (expected ISO 8601 with a zone, "
            "e.g. '2026-11-20T10:00:00Z')"
        ) from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InputError(f"Invalid {what}: {_shown(text)} has no time zone (add Z or +01:00)")
    return check_instant(moment, what=what)


def isoformat(moment: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, the one form Fleet writes.

    >>> isoformat(datetime(2026, 11, 20, 10, tzinfo=timezone.utc))
    '2026-11-20T10:00:00Z'
    """
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
