"""`Security`: the one place that decides affected, enforced and known holes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from packaging.version import Version

from fleet.core.advisories import Advisory, AffectedRange, RiskAcceptance, Security, Severity

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def adv(id_: str, component: str, severity: str, introduced: str, fixed: str | None, *, age=1):
    events = [{"introduced": introduced}] + ([{"fixed": fixed}] if fixed else [])
    return Advisory(
        id_,
        component,
        Severity(severity),
        NOW - timedelta(days=age),
        (AffectedRange.parse({"type": "ECOSYSTEM", "events": events}),),
    )


def test_one_id_on_two_components_is_judged_per_component() -> None:
    api = adv("GHSA-1", "api", "critical", "0", "2.3.5")
    web = adv("GHSA-1", "web", "low", "0", "2.3.5")
    sec = Security([api, web], now=NOW)
    found = sec.enforced("x", {"api": Version("2.3.0"), "web": Version("2.3.0")})
    assert [(f.advisory.id, f.advisory.component) for f in found] == [("GHSA-1", "api")]
    assert api.key != web.key


@pytest.mark.parametrize(
    ("severity", "age_days", "enforced", "excludes"),
    [
        ("critical", 0, True, True),
        ("high", 1, False, True),
        ("high", 8, True, True),
        ("medium", 1, False, True),
        ("medium", 31, True, True),
        ("low", 400, False, False),
    ],
)
def test_enforced_and_holes_by_severity_and_age(
    severity: str, age_days: int, enforced: bool, excludes: bool
) -> None:
    a = adv("A", "api", severity, "0", "9", age=age_days)
    (finding,) = Security([a], now=NOW).findings("x", "api", Version("1.0"))
    assert (finding.enforced, finding.excludes) == (enforced, excludes)


def test_a_risk_acceptance_suspends_enforcement_and_the_hole_on_that_instance_only() -> None:
    a = adv("A", "api", "critical", "0", "9")
    ra = RiskAcceptance("x", "A", "ciso", "WAF rule", NOW + timedelta(days=1))
    expired = RiskAcceptance("y", "A", "ciso", "old", NOW - timedelta(seconds=1))
    sec = Security([a], [ra, expired], now=NOW)
    (on_x,) = sec.findings("x", "api", Version("1.0"))
    (on_y,) = sec.findings("y", "api", Version("1.0"))
    assert not on_x.enforced and not on_x.excludes and on_x.acceptance == ra
    assert on_y.enforced and on_y.excludes and on_y.acceptance is None
    assert sec.accepted_ids("x") == frozenset({"A"}) and sec.accepted_ids("y") == frozenset()
