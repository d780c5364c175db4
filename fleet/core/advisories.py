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
    "AdvisoryIndex",
    "AdvisoryKey",
    "AffectedRange",
    "Finding",
    "RangeEvent",
    "RiskAcceptance",
    "Security",
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

    @property
    def rank(self) -> int:
        """Low 0, medium 1, high 2, critical 3: `a.rank >= Severity.MEDIUM.rank`."""
        return _RANKS[self]


_RANKS = {Severity.LOW: 0, Severity.MEDIUM: 1, Severity.HIGH: 2, Severity.CRITICAL: 3}

# An advisory is identified by its id and the component it names: one OSV
# record that names several packages is one advisory per component.
AdvisoryKey = tuple[str, str]


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

    @property
    def key(self) -> AdvisoryKey:
        """`(id, component)`: what identifies an advisory."""
        return (self.id, self.component)

    def label(self) -> str:
        """`FLEET-2026-0001 (critical) on api`, for reasons and reports."""
        return f"{self.id} ({self.severity}) on {self.component}"

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


@dataclass(frozen=True, slots=True)
class Finding:
    """One advisory affecting one version that one instance runs (or would run).

    `severe`: critical, or past its deadline; `enforced`: severe and not
    risk-accepted on the instance. `excludes`: the version is a known hole
    that a normal compile never chooses (open, and medium or above, or
    enforced).
    """

    advisory: Advisory
    version: Version
    deadline: datetime | None
    overdue: bool
    enforced: bool
    acceptance: RiskAcceptance | None = None
    severe: bool = False

    @property
    def open(self) -> bool:
        """Not risk-accepted on the instance."""
        return self.acceptance is None

    @property
    def excludes(self) -> bool:
        return self.open and (self.enforced or self.advisory.severity.rank >= Severity.MEDIUM.rank)


_NONE: frozenset[str] = frozenset()


class AdvisoryIndex:
    """Which advisories affect a component version: a cached look-up that does
    not depend on time, so a plan memo can keep it across compiles.

    >>> AdvisoryIndex([critical]).affecting("api", Version("2.3.0"))[0].id
    'FLEET-2026-0001'
    """

    def __init__(self, advisories: Sequence[Advisory]) -> None:
        by_component: dict[str, list[Advisory]] = {}
        for adv in advisories:
            by_component.setdefault(adv.component, []).append(adv)
        self._by_component = {k: tuple(v) for k, v in by_component.items()}
        self._cache: dict[tuple[str, Version], tuple[Advisory, ...]] = {}

    def affecting(self, component: str, version: Version) -> tuple[Advisory, ...]:
        """Every advisory whose ranges or versions cover `component` `version`."""
        key = (component, version)
        hit = self._cache.get(key)
        if hit is None:
            hit = tuple(a for a in self._by_component.get(component, ()) if a.affects(version))
            self._cache[key] = hit
        return hit


class Security:
    """The one place that decides which advisories affect a version and which of
    them are enforced on an instance at `now`. The plan, the compliance scan,
    patch rollouts, the rollback floor, stale-approval checks and the API all
    ask it.

    Risk acceptances are per instance and advisory id (every component the id
    names); the active one listed last counts.

    >>> sec = Security([critical], now=now)
    >>> [f.enforced for f in sec.findings("acme-prod", "api", Version("2.3.0"))]
    [True]
    """

    def __init__(
        self,
        advisories: Sequence[Advisory],
        risk_acceptances: Sequence[RiskAcceptance] = (),
        *,
        now: datetime,
        deadlines: Mapping[Severity, timedelta | None] = DEFAULT_DEADLINES,
        index: AdvisoryIndex | None = None,
    ) -> None:
        self.now = now
        self.deadlines = deadlines
        self.index = index or AdvisoryIndex(advisories)
        acceptances: dict[tuple[str, str], RiskAcceptance] = {}
        for ra in risk_acceptances:
            if ra.is_active(now):
                acceptances[(ra.instance, ra.advisory)] = ra
        self._acceptances = acceptances
        self._accepting = frozenset(ra.instance for ra in acceptances.values())
        self._facts: dict[AdvisoryKey, tuple[datetime | None, bool, bool]] = {}
        self._findings: dict[tuple[str | None, str, Version], tuple[Finding, ...]] = {}

    def affecting(self, component: str, version: Version) -> tuple[Advisory, ...]:
        """Every advisory whose ranges or versions cover `component` `version`."""
        return self.index.affecting(component, version)

    def acceptance(self, instance: str, advisory: str) -> RiskAcceptance | None:
        """The active risk acceptance of advisory id `advisory` on `instance`, if any."""
        if instance not in self._accepting:
            return None
        return self._acceptances.get((instance, advisory))

    def accepted_ids(self, instance: str) -> frozenset[str]:
        """The advisory ids risk-accepted on `instance` now."""
        if instance not in self._accepting:
            return _NONE
        return frozenset(a for (i, a) in self._acceptances if i == instance)

    def _facts_of(self, adv: Advisory) -> tuple[datetime | None, bool, bool]:
        hit = self._facts.get(adv.key)
        if hit is None:
            deadline = deadline_of(adv, self.deadlines)
            overdue = deadline is not None and self.now >= deadline
            hit = (deadline, overdue, is_enforced(adv, self.now, self.deadlines))
            self._facts[adv.key] = hit
        return hit

    def finding(self, instance: str, adv: Advisory, version: Version) -> Finding:
        deadline, overdue, severe = self._facts_of(adv)
        acceptance = self.acceptance(instance, adv.id)
        return Finding(
            adv, version, deadline, overdue, severe and acceptance is None, acceptance, severe
        )

    def findings(self, instance: str, component: str, version: Version) -> tuple[Finding, ...]:
        """Every advisory affecting `component` `version` on `instance`, judged at `now`."""
        # Only a risk acceptance makes a finding depend on the instance.
        key = (instance if instance in self._accepting else None, component, version)
        hit = self._findings.get(key)
        if hit is None:
            hit = self._findings[key] = tuple(
                self.finding(instance, adv, version) for adv in self.affecting(component, version)
            )
        return hit

    def holes(self, instance: str, component: str, version: Version) -> tuple[Finding, ...]:
        """The findings that make `version` a known hole on `instance` (never chosen)."""
        return tuple(f for f in self.findings(instance, component, version) if f.excludes)

    def enforced(self, instance: str, components: Mapping[str, Version | None]) -> list[Finding]:
        """The enforced advisories affecting a manifest of `instance`.

        >>> [f.advisory.id for f in Security([critical], now=now).enforced(
        ...     "acme-prod", {"api": Version("2.3.0")})]
        ['FLEET-2026-0001']
        """
        out: list[Finding] = []
        for component, version in components.items():
            if version is not None:
                out.extend(f for f in self.findings(instance, component, version) if f.enforced)
        return out
