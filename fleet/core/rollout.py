"""Rollout rules: waves (canary, then batches), the halt threshold, and the
approval tally (n distinct approvers, four eyes, rejection)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from fleet.core.errors import InputError

__all__ = [
    "Amount",
    "ApprovalTally",
    "ApprovalVerdict",
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


class ApprovalVerdict(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class Decision:
    approver: str
    approve: bool
    instances: frozenset[str]


@dataclass(slots=True)
class ApprovalTally:
    """Collects approvals for the instances of one run.

    `required` maps each waiting instance to the approvals it needs (from
    distinct approvers). The run's requester can never approve (four eyes);
    one rejection rejects the instances it names.
    """

    requested_by: str
    required: Mapping[str, int]
    approvers: dict[str, set[str]] = field(default_factory=dict)
    rejected_by: dict[str, str] = field(default_factory=dict)

    def refusal(self, approver: str, approve: bool) -> str | None:
        """Why this approver's input is refused, or None when it counts."""
        if not approver.strip():
            return "the approver is empty"
        if approve and approver.strip().lower() == self.requested_by.strip().lower():
            return f"{approver!r} requested this rollout and cannot approve it (four eyes)"
        return None

    def add(self, approver: str, approve: bool, instances: Iterable[str] = ()) -> list[str]:
        """Count one input for `instances` (all waiting when empty); returns those it touched.

        Raises `InputError` for an instance that is not waiting.
        """
        waiting = [i for i in self.required if self.verdict(i) is ApprovalVerdict.PENDING]
        chosen = list(instances) or waiting
        for name in chosen:
            if name not in self.required:
                raise InputError(f"Instance {name!r} is not waiting for approval in this run")
        touched = [n for n in chosen if self.verdict(n) is ApprovalVerdict.PENDING]
        for name in touched:
            if approve:
                self.approvers.setdefault(name, set()).add(approver.strip())
            else:
                self.rejected_by[name] = approver.strip()
        return touched

    def verdict(self, instance: str) -> ApprovalVerdict:
        if instance in self.rejected_by:
            return ApprovalVerdict.REJECTED
        if len(self.approvers.get(instance, ())) >= self.required[instance]:
            return ApprovalVerdict.APPROVED
        return ApprovalVerdict.PENDING

    def pending(self) -> list[str]:
        return [i for i in self.required if self.verdict(i) is ApprovalVerdict.PENDING]

    def missing(self, instance: str) -> int:
        return max(0, self.required[instance] - len(self.approvers.get(instance, ())))
