"""DESIGN.md "Audit": canonical JSON, the hash chain, verify naming the first broken link."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import timedelta

import pytest

from fleet.core.audit import GENESIS, AuditEvent, canonical_json, seal, verify_chain
from tests.factories import NOW


def chain(n: int) -> list[AuditEvent]:
    events, prev = [], GENESIS
    for i in range(1, n + 1):
        event = seal(
            AuditEvent(
                i, NOW + timedelta(seconds=i), "ops", "pin.add", f"pin:{i}", {"spec": "<3", "i": i}
            ),
            prev,
        )
        events.append(event)
        prev = event.hash
    return events


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"b": 1, "a": 2}, '{"a":2,"b":1}'),
        ({"t": NOW}, '{"t":"2026-11-26T12:00:00Z"}'),
        ({"s": "é"}, '{"s":"é"}'),
        ([1, (2, 3)], "[1,[2,3]]"),
        ({"nested": {"z": None, "y": [True]}}, '{"nested":{"y":[true],"z":null}}'),
    ],
)
def test_canonical_json(value, expected):
    assert canonical_json(value) == expected


def test_canonical_json_refuses_what_it_cannot_spell():
    with pytest.raises(TypeError, match="object"):
        canonical_json({"x": object()})


def test_hash_is_sha256_of_prev_hash_and_canonical_json():
    (event,) = chain(1)
    expected = hashlib.sha256((GENESIS + canonical_json(event.body())).encode()).hexdigest()
    assert event.hash == expected
    assert event.prev_hash == GENESIS


def test_intact_chain_verifies():
    verdict = verify_chain(chain(50))
    assert verdict.ok and verdict.checked == 50
    assert str(verdict) == "audit chain OK: 50 events verified"


def test_edited_details_are_found():
    events = chain(10)
    events[6] = replace(events[6], details={"spec": "<4", "i": 7})
    verdict = verify_chain(events)
    assert not verdict.ok and verdict.broken_seq == 7
    assert "edited" in str(verdict)


def test_deleted_row_is_found():
    events = chain(10)
    del events[3]
    verdict = verify_chain(events)
    assert not verdict.ok and verdict.broken_seq == 5


def test_reordered_rows_are_found():
    events = chain(10)
    events[4], events[5] = events[5], events[4]
    verdict = verify_chain(events)
    assert not verdict.ok and verdict.broken_seq == 6


def test_rewritten_tail_with_renumbering_is_found():
    events = chain(10)
    del events[3]
    events[3:] = [replace(e, seq=e.seq - 1) for e in events[3:]]
    verdict = verify_chain(events)
    assert not verdict.ok and verdict.broken_seq == 4
