"""Rollout rules: waves (canary, then batches) and the halt threshold.

The approval tally lives in `fleet.core.approvals`."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from fleet.core.errors import InputError

__all__ = [
    "MAX_COUNT",
    "Amount",
    "RolloutStrategy",
    "halted",
    "waves",
]

MAX_COUNT = 1_000_000
_AMOUNT = re.compile(r"([0-9]{1,9})(?:\.([0-9]{1,6}))?[ \t]*(%?)", re.ASCII)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True, slots=True)
class Amount:
    """A count (`3`) or a percentage (`10%`) of a total."""

    value: float
    percent: bool = False

    @classmethod
    def parse(cls, text: str | int | float) -> Amount:
        """Read `3` or `10%`: ASCII digits; a count is whole, a percentage at most 100.

        >>> Amount.parse("10%").of(200)
        20
        """
        raw = str(text).strip(" \t") if not isinstance(text, bool) else ""
        match = _AMOUNT.fullmatch(raw) if len(raw) <= 20 else None
        if match is None:
            raise InputError(
                f"Invalid amount: {_shown(text)} (expected a count such as 3 "
                "or a percentage such as 10%)"
            )
        whole, fraction, percent = match.groups()
        value = float(f"{whole}.{fraction or 0}")
        if percent and value > 100:
            raise InputError(f"Invalid amount: {_shown(text)} (a percentage is at most 100%)")
        if not percent and fraction is not None and int(fraction) != 0:
            raise InputError(f"Invalid amount: {_shown(text)} (a count is a whole number)")
        if not percent and value > MAX_COUNT:
            raise InputError(f"Invalid amount: {_shown(text)} (a count is at most {MAX_COUNT})")
        return cls(value, bool(percent))

    def of(self, total: int) -> int:
        """How many of `total`: percentages round up, so 10% of 5 is 1."""
        if self.percent:
            return min(total, math.ceil(total * self.value / 100))
        return min(total, int(self.value))

    def __str__(self) -> str:
        return f"{self.value:g}%" if self.percent else f"{int(self.value)}"


@dataclass(frozen=True, slots=True)
class RolloutStrategy:
    """Canary first, then batches; the rollout halts when failures pass the threshold.

    `halt_after` counts failed instances (or a percentage of those started);
    a rollout halts as soon as failures exceed it (`0` halts on the first).
    """

    canary: Amount = field(default_factory=lambda: Amount(1))
    batch: Amount = field(default_factory=lambda: Amount(25, percent=True))
    halt_after: Amount = field(default_factory=lambda: Amount(0))


def waves(instances: Sequence[str], strategy: RolloutStrategy) -> list[list[str]]:
    """Split `instances` (in order) into the canary wave and the batches.

    >>> waves(["a", "b", "c", "d", "e"], RolloutStrategy(Amount(1), Amount(2)))
    [['a'], ['b', 'c'], ['d', 'e']]
    """
    total = len(instances)
    if total == 0:
        return []
    out: list[list[str]] = []
    canary = strategy.canary.of(total)
    if canary:
        out.append(list(instances[:canary]))
    rest = list(instances[canary:])
    size = max(1, strategy.batch.of(total))
    out.extend(rest[i : i + size] for i in range(0, len(rest), size))
    return out


def halted(failed: int, started: int, strategy: RolloutStrategy) -> bool:
    """Whether failures have passed the halt threshold.

    >>> halted(1, 10, RolloutStrategy(halt_after=Amount(0)))
    True
    """
    if strategy.halt_after.percent:
        return started > 0 and failed * 100 > strategy.halt_after.value * started
    return failed > strategy.halt_after.value
