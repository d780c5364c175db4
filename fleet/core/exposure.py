"""Exposure over time: how many instances ran a version an advisory affects, per
severity, day by day.

What an instance ran is a list of spans (what it ran from a moment on, until
the next span); an advisory counts from its `published_at`. Each day is read
at its end (UTC), and today at `now`. An instance affected by a critical and
a high advisory counts once in each; a risk acceptance does not make an
instance less exposed, so it does not change the count.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from packaging.version import Version

from fleet.core.advisories import Advisory, Severity
from fleet.core.durations import require_aware

__all__ = ["DayExposure", "Span", "exposure_by_day"]


@dataclass(frozen=True, slots=True)
class Span:
    """What an instance ran from `start` on (None: from before any record)."""

    start: datetime | None
    versions: Mapping[str, Version]


@dataclass(frozen=True, slots=True)
class DayExposure:
    """How many instances were affected at the end of `day`, per severity."""

    day: date
    at: datetime
    counts: Mapping[str, int] = field(default_factory=dict)

    def count(self, severity: Severity | str) -> int:
        return self.counts.get(str(severity), 0)


def _moment(day: date, now: datetime) -> datetime:
    end = datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC) - timedelta(microseconds=1)
    return min(end, now)


def exposure_by_day(
    timelines: Mapping[str, Sequence[Span]],
    advisories: Sequence[Advisory],
    days: Iterable[date],
    *,
    now: datetime,
) -> list[DayExposure]:
    """Per day, the number of instances affected per severity (absent: none).

    >>> from datetime import UTC, date, datetime
    >>> from packaging.version import Version
    >>> from fleet.core.advisories import Advisory, Severity
    >>> adv = Advisory("A-1", "api", Severity.HIGH, datetime(2026, 11, 2, tzinfo=UTC),
    ...                versions=frozenset({Version("1.0")}))
    >>> fixed_on_3rd = Span(datetime(2026, 11, 3, 12, tzinfo=UTC), {"api": Version("1.1")})
    >>> spans = {"acme": [Span(None, {"api": Version("1.0")}), fixed_on_3rd]}
    >>> days = [date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 3)]
    >>> now = datetime(2026, 11, 4, tzinfo=UTC)
    >>> [dict(d.counts) for d in exposure_by_day(spans, [adv], days, now=now)]
    [{}, {'high': 1}, {}]
    """
    require_aware(now, what="exposure time")
    by_component: dict[str, list[Advisory]] = {}
    for adv in advisories:
        by_component.setdefault(adv.component, []).append(adv)
    found: dict[tuple[str, Version], tuple[tuple[datetime, str], ...]] = {}

    def affecting(versions: Mapping[str, Version]) -> list[tuple[datetime, str]]:
        out: list[tuple[datetime, str]] = []
        for component, version in versions.items():
            key = (component, version)
            hit = found.get(key)
            if hit is None:
                hit = tuple(
                    (a.published_at, str(a.severity))
                    for a in by_component.get(component, ())
                    if a.affects(version)
                )
                found[key] = hit
            out.extend(hit)
        return out

    moments = [(d, _moment(d, now)) for d in days]
    counts: list[dict[str, int]] = [{} for _ in moments]
    for spans in timelines.values():
        ordered = sorted(spans, key=lambda s: (s.start is not None, s.start or now))
        facts = [(s.start, affecting(s.versions)) for s in ordered]
        if not any(hits for _, hits in facts):
            continue
        for i, (_, moment) in enumerate(moments):
            current = None
            for start, hits in facts:
                if start is not None and start > moment:
                    break
                current = hits
            if not current:
                continue
            for severity in {sev for published, sev in current if published <= moment}:
                counts[i][severity] = counts[i].get(severity, 0) + 1
    return [DayExposure(d, m, c) for (d, m), c in zip(moments, counts, strict=True)]
