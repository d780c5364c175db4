"""Rollout rules: waves (canary, then batches) and the halt threshold.

The approval tally lives in `fleet.core.approvals`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from fleet.core.errors import InputError

__all__ = [
    "Amount",
    "RolloutStrategy",
    "halted",
    "waves",
]


@dataclass(frozen=True, slots=True)
class Amount:
    """A count (`3`) or a percentage (`10%`) of a total."""

    value: float
    percent: bool = False

    @classmethod
    def parse(cls, text: str | int | float) -> Amount:
        """Read `3` or `10%`.

        >>> Amount.parse("10%").of(200)
        20
        """
        raw = str(text).strip()
        percent = raw.endswith("%")
        number = raw[:-1].strip() if percent else raw
        try:
            value = float(number)
        except ValueError:
            raise InputError(
                f"Invalid amount: {text!r} (expected a count or a percentage)"
            ) from None
        if value < 0 or (percent and value > 100) or (not percent and value != int(value)):
            raise InputError(f"Invalid amount: {text!r}")
        return cls(value, percent)

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
