"""Security advisories: OSV affected ranges, severities, deadlines, enforcement.

Range semantics follow the OSV schema: within one range a version is affected
from an `introduced` event up to the next `fixed` (exclusive) or
`last_affected` (inclusive) event; `limit` events cap the range (exclusive);
`introduced: "0"` means from the very first version, pre-releases included.
A version is affected when any range covers it or it is listed in `versions`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from packaging.version import Version

from fleet.core.errors import InputError
from fleet.core.versions import parse_version

__all__ = [
    "DEFAULT_DEADLINES",
    "Advisory",
    "AffectedRange",
    "RangeEvent",
    "RiskAcceptance",
    "Severity",
    "affecting",
    "deadline_of",
    "is_enforced",
    "parse_versions",
]


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


DEFAULT_DEADLINES: Mapping[Severity, timedelta | None] = {
    Severity.CRITICAL: timedelta(hours=24),
    Severity.HIGH: timedelta(days=7),
    Severity.MEDIUM: timedelta(days=30),
    Severity.LOW: None,
}

_EVENT_KINDS = ("introduced", "fixed", "last_affected", "limit")
# Sort order of events at one version: a `fixed` closes before an `introduced`
# reopens, so a version that one pair fixes and the next reintroduces stays
# affected (the safe reading where OSV does not say).
_EVENT_ORDER = {"fixed": 0, "last_affected": 1, "introduced": 2, "limit": 3}


@dataclass(frozen=True, slots=True)
class RangeEvent:
    """One OSV event; `version` is None for `introduced: "0"` (the very first version)."""

    kind: str
    raw: str
    version: Version | None

    @classmethod
    def parse(cls, event: Mapping[str, Any]) -> RangeEvent:
        keys = [k for k in event if k in _EVENT_KINDS]
        if len(keys) != 1 or len(event) != 1:
            raise InputError(
                f"Invalid OSV event: {dict(event)!r} (expected exactly one of "
                "introduced, fixed, last_affected, limit)"
            )
        kind = keys[0]
        raw = str(event[kind])
        if kind == "introduced" and raw == "0":
            return cls(kind, raw, None)
        if kind == "limit" and raw == "*":
            return cls(kind, raw, None)
        return cls(kind, raw, parse_version(raw))


@dataclass(frozen=True, slots=True)
class AffectedRange:
    """An OSV range object, kept verbatim (`raw`) besides its parsed events."""

    type: str
    events: tuple[RangeEvent, ...]
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> AffectedRange:
        kind = str(data.get("type", ""))
        if kind not in ("ECOSYSTEM", "SEMVER", "GIT"):
            raise InputError(f"Invalid OSV range type: {kind!r} (ECOSYSTEM, SEMVER or GIT)")
        events_data = data.get("events")
        if not isinstance(events_data, list) or not events_data:
            raise InputError(f"Invalid OSV range: {dict(data)!r} (needs a list of events)")
        if kind == "GIT":
            # Commit hashes cannot be compared with versions: such a range
            # affects no version here (OSV records carry an ECOSYSTEM range too).
            return cls(kind, (), dict(data))
        events = tuple(RangeEvent.parse(e) for e in events_data)
        if not any(e.kind == "introduced" for e in events):
            raise InputError(f"Invalid OSV range: {events_data!r} (no 'introduced' event)")
        return cls(kind, events, dict(data))

    def covers(self, version: Version) -> bool:
        """OSV's evaluation: walk the sorted events, opening and closing.

        >>> AffectedRange.parse({"type": "ECOSYSTEM",
        ...     "events": [{"introduced": "0"}, {"fixed": "1.2"}]}).covers(Version("1.1"))
        True
        """
        limits = [e for e in self.events if e.kind == "limit"]
        if limits and not any(e.version is None or version < e.version for e in limits):
            return False
        affected = False
        for event in sorted(
            (e for e in self.events if e.kind != "limit"),
            key=lambda e: (e.version is not None, e.version or Version("0"), _EVENT_ORDER[e.kind]),
        ):
            if event.kind == "introduced":
                if event.version is None or version >= event.version:
                    affected = True
            elif event.kind == "fixed":
                assert event.version is not None
                if version >= event.version:
                    affected = False
            elif event.kind == "last_affected":
                assert event.version is not None
                if version > event.version:
                    affected = False
        return affected


@dataclass(frozen=True, slots=True)
class Advisory:
    id: str
    component: str
    severity: Severity
    published_at: datetime
    ranges: tuple[AffectedRange, ...] = ()
    versions: frozenset[Version] = frozenset()
    aliases: tuple[str, ...] = ()
    summary: str | None = None

    def affects(self, version: Version) -> bool:
        """Whether `version` is in a range or in the explicit list."""
        if version in self.versions:
            return True
        return any(r.covers(version) for r in self.ranges)

    def fixed_versions(self) -> list[Version]:
        """The `fixed` events' versions, in order (for reports)."""
        return sorted(
            {e.version for r in self.ranges for e in r.events if e.kind == "fixed" and e.version}
        )


@dataclass(frozen=True, slots=True)
class RiskAcceptance:
    """Who accepted running an affected version on one instance, why, and until when."""

    instance: str
    advisory: str
    by: str
    reason: str
    until: datetime

    def is_active(self, now: datetime) -> bool:
        return now < self.until


def deadline_of(
    advisory: Advisory, deadlines: Mapping[Severity, timedelta | None] = DEFAULT_DEADLINES
) -> datetime | None:
    """`published_at` plus the severity's deadline; None for report-only severities."""
    delta = deadlines.get(advisory.severity)
    return None if delta is None else advisory.published_at + delta


def is_enforced(
    advisory: Advisory,
    now: datetime,
    deadlines: Mapping[Severity, timedelta | None] = DEFAULT_DEADLINES,
) -> bool:
    """A critical advisory is enforced at once; any other once its deadline has passed.

    >>> is_enforced(medium_published_40_days_ago, now)
    True
    """
    if advisory.severity is Severity.CRITICAL:
        return True
    deadline = deadline_of(advisory, deadlines)
    return deadline is not None and now >= deadline


def parse_versions(values: Iterable[str]) -> frozenset[Version]:
    """The PEP 440 versions of an OSV `versions` list.

    Entries that are not PEP 440 (some real records list tags such as
    `2004d`) can never equal a Fleet version, so they are skipped.
    """
    out: set[Version] = set()
    for value in values:
        try:
            out.add(Version(str(value)))
        except ValueError:
            continue
    return frozenset(out)


def affecting(advisories: Sequence[Advisory], component: str, version: Version) -> list[Advisory]:
    return [a for a in advisories if a.component == component and a.affects(version)]
