"""Rollout rules: waves and the halt threshold."""

from __future__ import annotations

import pytest

from fleet.core.errors import InputError
from fleet.core.rollout import Amount, RolloutStrategy, halted, waves

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
