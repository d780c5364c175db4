"""Exposure over time: instances affected per severity per day."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.version import Version

from fleet.core.advisories import Advisory, Severity
from fleet.core.errors import InputError
from fleet.core.exposure import Span, exposure_by_day

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
DAYS = [date(2026, 11, d) for d in range(25, 31)]


def adv(
    ident: str, severity: Severity, published: datetime, *versions: str, component: str = "api"
) -> Advisory:
    return Advisory(
        ident, component, severity, published, versions=frozenset(Version(v) for v in versions)
    )


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=UTC)


CRIT = adv("C", Severity.CRITICAL, at(26, 8), "1.0")
HIGH = adv("H", Severity.HIGH, at(27), "1.0", "1.1")
LOW_WEB = adv("L", Severity.LOW, at(20), "2.0", component="web")


@pytest.mark.parametrize(
    ("spans", "expected"),
    [
        # never affected
        ([Span(None, {"api": Version("2.0")})], [{}] * 6),
        # affected from publication on, per severity, counted once per severity
        (
            [Span(None, {"api": Version("1.0")})],
            [{}, {"critical": 1}] + [{"critical": 1, "high": 1}] * 4,
        ),
        # fixed during the 28th: the end of that day counts
        (
            [Span(None, {"api": Version("1.0")}), Span(at(28, 9), {"api": Version("2.0")})],
            [{}, {"critical": 1}, {"critical": 1, "high": 1}, {}, {}, {}],
        ),
        # moved to a version only the high advisory affects
        (
            [Span(None, {"api": Version("1.0")}), Span(at(27, 6), {"api": Version("1.1")})],
            [{}, {"critical": 1}] + [{"high": 1}] * 4,
        ),
        # rolled back onto a vulnerable version on the 29th
        (
            [Span(None, {"api": Version("2.0")}), Span(at(29), {"api": Version("1.0")})],
            [{}, {}, {}, {}, {"critical": 1, "high": 1}, {"critical": 1, "high": 1}],
        ),
        # a low advisory on another component counts too (report-only is still exposure)
        (
            [Span(None, {"api": Version("2.0"), "web": Version("2.0")})],
            [{"low": 1}] * 6,
        ),
        # a span that starts after now is not counted yet
        ([Span(at(30, 18), {"api": Version("1.0")})], [{}] * 6),
    ],
)
def test_exposure_per_day(spans: list[Span], expected: list[dict[str, int]]) -> None:
    found = exposure_by_day({"acme": spans}, [CRIT, HIGH, LOW_WEB], DAYS, now=NOW)
    assert [dict(d.counts) for d in found] == expected
    assert [d.day for d in found] == DAYS
    assert found[-1].at == NOW  # today is read now, not at its end


def test_instances_add_up() -> None:
    timelines = {
        "a": [Span(None, {"api": Version("1.0")})],
        "b": [Span(None, {"api": Version("1.1")})],
        "c": [Span(None, {"api": Version("2.0")})],
    }
    last = exposure_by_day(timelines, [CRIT, HIGH], [date(2026, 11, 30)], now=NOW)[0]
    assert (last.count(Severity.CRITICAL), last.count("high"), last.count("low")) == (1, 2, 0)


def test_the_time_needs_a_zone() -> None:
    with pytest.raises(InputError):
        exposure_by_day({}, [], DAYS, now=datetime(2026, 11, 30))


versions = st.sampled_from(["1.0", "1.1", "2.0"]).map(Version)


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from("abcdefgh"),
        st.lists(
            st.tuples(st.integers(min_value=0, max_value=200), versions), min_size=1, max_size=4
        ),
        max_size=8,
    )
)
def test_no_severity_counts_more_instances_than_there_are(
    fleet: dict[str, list[tuple[int, Version]]],
) -> None:
    timelines = {
        name: [Span(NOW - timedelta(hours=h), {"api": v}) for h, v in spans]
        for name, spans in fleet.items()
    }
    for day in exposure_by_day(timelines, [CRIT, HIGH, LOW_WEB], DAYS, now=NOW):
        assert all(0 < n <= len(fleet) for n in day.counts.values())
        assert "low" not in day.counts
