"""Compliance rows, patch selection, drift comparison and open maintenance windows."""

from __future__ import annotations

from datetime import timedelta

import pytest
from packaging.version import Version

from fleet.core.advisories import Security
from fleet.core.channels import MaintenanceWindow
from fleet.core.compliance import (
    ComplianceStatus,
    compliance_rows,
    patch_selection,
    time_left,
)
from fleet.core.drift import compare
from fleet.core.windows import auto_update_selection
from tests import factories as f

NOW = f.NOW
EVENTS = [{"introduced": "1.0"}, {"fixed": "1.0.1"}]


@pytest.mark.parametrize(
    ("severity", "published", "accepted", "status"),
    [
        ("critical", NOW - timedelta(hours=1), False, ComplianceStatus.ENFORCED),
        ("critical", NOW - timedelta(days=2), False, ComplianceStatus.OVERDUE),
        ("high", NOW - timedelta(days=1), False, ComplianceStatus.DUE),
        ("high", NOW - timedelta(days=8), False, ComplianceStatus.OVERDUE),
        ("medium", NOW - timedelta(days=1), False, ComplianceStatus.DUE),
        ("low", NOW - timedelta(days=400), False, ComplianceStatus.REPORT_ONLY),
        ("critical", NOW - timedelta(days=2), True, ComplianceStatus.RISK_ACCEPTED),
    ],
)
def test_status_of_a_finding(severity, published, accepted, status):
    ra = [f.acceptance("a1", until=NOW + timedelta(days=1))] if accepted else []
    s = f.state(
        instances=[f.instance("a1", current={"api": "1.0.0", "web": "1.0.0"})],
        advisories=[f.advisory(severity=severity, published_at=published, events=EVENTS)],
        risk_acceptances=ra,
    )
    (row,) = compliance_rows(s, NOW)
    assert row.status is status
    assert row.enforced == (status in (ComplianceStatus.ENFORCED, ComplianceStatus.OVERDUE))


def test_rows_only_for_affected_instances_and_table_columns():
    s = f.state(
        instances=[
            f.instance("a1", current={"api": "1.0.0"}),
            f.instance("a2", current={"api": "1.0.1"}),
        ],
        advisories=[f.advisory(published_at=NOW - timedelta(hours=6), events=EVENTS)],
    )
    (row,) = compliance_rows(s, NOW)
    assert row.to_row(NOW) == {
        "instance": "a1",
        "component": "api",
        "version": "1.0.0",
        "advisory": "FLEET-2026-0001",
        "severity": "critical",
        "deadline": "2026-11-27T06:00:00Z",
        "time left": "18h",
        "status": "enforced",
    }


@pytest.mark.parametrize(
    ("delta", "words"),
    [(timedelta(days=1), "1d"), (timedelta(minutes=-90), "overdue 90m"), (timedelta(0), "0m")],
)
def test_time_left(delta, words):
    assert time_left(NOW + delta, NOW) == words
    assert time_left(None, NOW) == ""


def test_patch_selection_splits_enforced_due_and_accepted():
    crit = f.advisory("CRIT", events=EVENTS)
    med = f.advisory("MED", severity="medium", events=EVENTS)
    s = f.state(
        instances=[
            f.instance("a1", current={"api": "1.0.0"}),
            f.instance("r1", current={"api": "1.0.0"}),
        ],
        advisories=[crit, med],
        risk_acceptances=[f.acceptance("r1", "CRIT", until=NOW + timedelta(hours=1))],
    )
    rows = compliance_rows(s, NOW)
    every = patch_selection(rows)
    assert every.advisories == ("CRIT",) and every.enforce == ("a1",)
    assert [r.instance for r in every.accepted] == ["r1"]
    medium = patch_selection(rows, "MED")
    assert medium.normal == ("a1", "r1") and medium.enforce == ()
    assert "deadline **2026-12-26T10:00:00Z**" in medium.deadlines["a1"]
    later = compliance_rows(s, NOW + timedelta(hours=2))
    assert patch_selection(later).enforce == ("a1", "r1")  # the acceptance ended


def test_the_enforced_findings_of_a_manifest_are_the_enforced_advisories_affecting_it():
    crit = f.advisory("CRIT", events=EVENTS)
    med = f.advisory("MED", severity="medium", events=EVENTS)
    security = Security([crit, med], now=NOW)
    found = security.enforced("a1", {"api": Version("1.0.0")})
    assert [x.advisory.id for x in found] == ["CRIT"]
    assert security.enforced("a1", {"api": Version("1.0.1")}) == []


def test_drift_compares_versions_and_hash():
    same = compare(
        "a1",
        revision=2,
        recorded={"api": "2.4.0rc1"},
        recorded_hash="h",
        observed={"api": "2.4.0-rc.1"},
        observed_hash="h",
    )
    assert not same.drifted and same.describe() == "in sync"
    changed = compare(
        "a1",
        revision=2,
        recorded={"api": "1.1", "web": "1.0"},
        recorded_hash="h",
        observed={"api": "1.1", "worker": "1.0"},
        observed_hash="g",
    )
    assert changed.differences == (("web", "1.0", None), ("worker", None, "1.0"))
    other = compare(
        "a1", revision=2, recorded={}, recorded_hash="h", observed={}, observed_hash="g"
    )
    assert other.drifted and "runs manifest g" in other.describe()


def test_auto_update_selection_follows_windows_and_policies():
    window = MaintenanceWindow("0 2 * * *", timedelta(hours=2), "UTC")
    s = f.state(
        channels=[
            f.channel("nightly", window=window),
            f.channel("stable"),
            f.channel("manual", "manual-approval"),
        ],
        instances=[
            f.instance("n1", channel="nightly"),
            f.instance("s1", channel="stable"),
            f.instance("m1", channel="manual"),
            f.instance("s2", channel="stable", policy_override="frozen"),
        ],
    )
    closed = auto_update_selection(s, NOW)  # 12:00
    assert closed.open == ("s1",)
    assert closed.closed == (("n1", "nightly", NOW.replace(day=27, hour=2)),)
    opened = auto_update_selection(s, NOW.replace(hour=3))
    assert opened.open == ("n1", "s1") and opened.closed == ()
