"""Rollout rules: waves, the halt threshold, the approval tally."""

from __future__ import annotations

import pytest

from fleet.core.errors import InputError
from fleet.core.rollout import (
    Amount,
    ApprovalTally,
    ApprovalVerdict,
    RolloutStrategy,
    halted,
    waves,
)

NAMES = [f"i{n}" for n in range(10)]


@pytest.mark.parametrize(
    ("canary", "batch", "sizes"),
    [
        ("1", "3", [1, 3, 3, 3]),
        ("10%", "50%", [1, 5, 4]),
        ("0", "5", [5, 5]),
        ("2", "100%", [2, 8]),
        ("20%", "1", [2, 1, 1, 1, 1, 1, 1, 1, 1]),
        ("100%", "1", [10]),
    ],
)
def test_waves(canary, batch, sizes):
    plan = waves(NAMES, RolloutStrategy(Amount.parse(canary), Amount.parse(batch)))
    assert [len(w) for w in plan] == sizes
    assert [n for w in plan for n in w] == NAMES  # order kept, nobody twice


def test_no_instances_no_waves():
    assert waves([], RolloutStrategy()) == []


@pytest.mark.parametrize(
    ("threshold", "failed", "started", "stop"),
    [
        ("0", 0, 5, False),
        ("0", 1, 5, True),
        ("2", 2, 5, False),
        ("2", 3, 5, True),
        ("20%", 1, 5, False),
        ("20%", 2, 5, True),
        ("100%", 5, 5, False),
    ],
)
def test_halt_threshold(threshold, failed, started, stop):
    assert halted(failed, started, RolloutStrategy(halt_after=Amount.parse(threshold))) is stop


@pytest.mark.parametrize("text", ["x", "-1", "101%", "1.5", ""])
def test_bad_amounts_name_the_value(text):
    with pytest.raises(InputError, match=repr(text)):
        Amount.parse(text)


def test_tally_needs_distinct_approvers_and_refuses_the_requester():
    tally = ApprovalTally("alice", {"m1": 2, "m2": 1})
    assert tally.refusal("alice", True) is not None
    assert tally.refusal("Alice ", True) is not None
    assert tally.refusal("alice", False) is None  # the requester may withdraw (reject)
    assert tally.add("bob", True) == ["m1", "m2"]
    assert tally.verdict("m2") is ApprovalVerdict.APPROVED
    assert tally.verdict("m1") is ApprovalVerdict.PENDING
    tally.add("bob", True, ["m1"])
    assert tally.missing("m1") == 1
    tally.add("carol", True, ["m1"])
    assert tally.pending() == []


def test_tally_rejection_and_subsets():
    tally = ApprovalTally("alice", {"m1": 1, "m2": 1})
    assert tally.add("bob", False, ["m1"]) == ["m1"]
    assert tally.verdict("m1") is ApprovalVerdict.REJECTED
    assert tally.add("carol", True) == ["m2"]  # only what is still waiting
    with pytest.raises(InputError, match="'m9'"):
        tally.add("carol", True, ["m9"])
