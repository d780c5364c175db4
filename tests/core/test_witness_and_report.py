"""Witnessed heads (truncated, forked) and the audit report's rules, table-driven."""

from __future__ import annotations

from datetime import timedelta

import pytest
from packaging.version import Version

from fleet.core.advisories import Advisory, RiskAcceptance, Severity
from fleet.core.audit import AuditEvent
from fleet.core.errors import InputError
from fleet.core.report import advisories_at, rests_on
from fleet.core.witness import ChainHead, PublishedHead, check_witnesses
from tests.factories import NOW

A, B = "a" * 64, "b" * 64


@pytest.mark.parametrize(
    ("seq", "digest", "length", "hashes", "status"),
    [
        (0, A, 0, {}, "ok"),  # the empty chain, published before anything happened
        (3, A, 5, {3: A}, "ok"),
        (5, A, 5, {5: A}, "ok"),
        (6, A, 5, {}, "truncated"),
        (3, A, 5, {3: B}, "forked"),
        (3, A, 5, {}, "forked"),  # the event is gone from the middle: not the head's hash
    ],
)
def test_heads_are_judged(seq, digest, length, hashes, status) -> None:
    head = PublishedHead(ChainHead(seq, digest, NOW), "file heads.jsonl line 1")
    (check,) = check_witnesses([head], length=length, hashes=hashes)
    assert check.status.value == status
    if status != "ok":
        assert status.upper() in str(check) and "file heads.jsonl line 1" in str(check)
        assert "2026-11-26T12:00:00Z" in str(check)


@pytest.mark.parametrize(
    "data",
    [
        {"seq": 1, "hash": "x" * 64, "at": "2026-11-26T12:00:00Z"},
        {"seq": -1, "hash": A, "at": "2026-11-26T12:00:00Z"},
        {"seq": True, "hash": A, "at": "2026-11-26T12:00:00Z"},
        {"seq": 1, "hash": A, "at": "2026-11-26T12:00:00"},
        {"seq": 1, "hash": A},
        {"seq": 1, "hash": A, "at": "soon"},
    ],
)
def test_what_is_not_a_head_is_refused_quoting_it(data) -> None:
    with pytest.raises(InputError, match="Invalid chain head"):
        ChainHead.from_json(data)


CRIT = Advisory("FLEET-1", "api", Severity.CRITICAL, NOW, versions=frozenset({Version("2.3.0")}))
MED = Advisory(
    "FLEET-2",
    "api",
    Severity.MEDIUM,
    NOW - timedelta(days=40),
    versions=frozenset({Version("2.3.0")}),
)
ACCEPT = RiskAcceptance("acme", "FLEET-1", "ciso", "not exposed", NOW + timedelta(days=2))


@pytest.mark.parametrize(
    ("at", "acceptances", "expected"),
    [
        (NOW - timedelta(hours=1), [], [("FLEET-2", True, True)]),  # FLEET-1 not yet published
        (NOW, [], [("FLEET-1", True, True), ("FLEET-2", True, True)]),
        (
            NOW,
            [(ACCEPT, NOW + timedelta(hours=1))],
            [("FLEET-1", True, True), ("FLEET-2", True, True)],
        ),
        (
            NOW + timedelta(hours=2),
            [(ACCEPT, NOW + timedelta(hours=1))],
            [("FLEET-1", False, False), ("FLEET-2", True, True)],
        ),
        (
            NOW + timedelta(days=3),
            [(ACCEPT, NOW)],
            [("FLEET-1", True, True), ("FLEET-2", True, True)],
        ),  # ended
    ],
)
def test_advisories_as_they_stood(at, acceptances, expected) -> None:
    found = advisories_at("acme", {"api": "2.3.0"}, [CRIT, MED], acceptances, at=at)
    assert [(f.advisory.id, f.open, f.enforced) for f in found] == expected


def _event(
    seq: int, subject: str, details: dict, run: str | None = None, minutes: int = 0
) -> AuditEvent:
    return AuditEvent(seq, NOW + timedelta(minutes=minutes), "ops", "x", subject, details, run)


def test_the_events_a_report_rests_on() -> None:
    events = [
        _event(1, "instance:acme", {"revision": 2}),
        _event(2, "instance:acme", {"revision": 1}),
        _event(3, "instance:acme", {}, run="r2"),
        _event(4, "instance:other", {"revision": 2}),
        _event(5, "risk:acme/FLEET-1", {}),
        _event(6, "instance:acme", {"revision": 2}, minutes=90),
    ]
    found = rests_on(events, instance="acme", revision=2, runs=["r2"], at=NOW + timedelta(hours=1))
    assert [e.seq for e in found] == [1, 3, 5]
