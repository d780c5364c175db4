"""Rollback: choose the revision to restore, and hold the security floor.

A rollback restores what ran before, as a new revision with `rollback_of`
set (history only moves forward). Pins do not apply to a rollback target,
but every pin it breaks is reported. A target that contains a version
affected by an enforced advisory is refused unless a risk acceptance with a
reason covers that advisory for the instance.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from fleet.core.advisories import (
    DEFAULT_DEADLINES,
    Advisory,
    RiskAcceptance,
    Security,
    Severity,
)
from fleet.core.durations import isoformat, parse_instant
from fleet.core.errors import InputError, NoRollbackTarget, RollbackRefused
from fleet.core.manifests import Revision
from fleet.core.pins import Pin

__all__ = ["RollbackPlan", "RollbackTarget", "choose_rollback", "running_at"]

_REVISION = re.compile(r"[0-9]{1,9}", re.ASCII)


def _shown(value: str) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True, slots=True)
class RollbackTarget:
    """`previous` good revision (default), a revision `number`, or a point in `time`."""

    kind: str = "previous"
    revision: int | None = None
    time: datetime | None = None

    @classmethod
    def parse(cls, text: str) -> RollbackTarget:
        """Read `previous`, `r7` / `7`, or an ISO 8601 time with a zone.

        >>> RollbackTarget.parse("r7")
        RollbackTarget(kind='revision', revision=7, time=None)
        """
        text = text.strip()
        if text == "previous":
            return cls()
        digits = text[1:] if text[:1] in ("r", "R") else text
        if _REVISION.fullmatch(digits):
            return cls("revision", revision=int(digits))
        try:
            moment = parse_instant(text, what="rollback target")
        except InputError as exc:
            if "out of range" in str(exc):
                raise
            raise InputError(
                f"Invalid rollback target: {_shown(text)} (expected previous, a revision "
                "number such as r7, or an ISO 8601 time with a zone)"
            ) from None
        return cls("time", time=moment)

    def __str__(self) -> str:
        if self.kind == "revision":
            return f"revision {self.revision}"
        if self.kind == "time" and self.time is not None:
            return f"what ran at {isoformat(self.time)}"
        return "the previous good revision"


@dataclass(frozen=True, slots=True)
class RollbackPlan:
    instance: str
    target: Revision
    number: int
    rollback_of: int
    warnings: tuple[str, ...] = ()
    accepted_risks: tuple[RiskAcceptance, ...] = ()


def _current(history: Sequence[Revision]) -> Revision | None:
    ran = [r for r in history if r.ran and r.deployed_at is not None]
    return max(ran, key=lambda r: (r.deployed_at, r.number)) if ran else None


def running_at(history: Sequence[Revision], moment: datetime) -> Revision | None:
    """The revision that was running at `moment`: the last one to start before it.

    >>> running_at(history, datetime(2026, 11, 10, tzinfo=timezone.utc)).number
    2
    """
    before = [r for r in history if r.ran and r.deployed_at is not None and r.deployed_at <= moment]
    return max(before, key=lambda r: (r.deployed_at, r.number)) if before else None


def _select(instance: str, history: Sequence[Revision], target: RollbackTarget) -> Revision:
    current = _current(history)
    if target.kind == "revision":
        found = next((r for r in history if r.number == target.revision), None)
        if found is None:
            raise NoRollbackTarget(f"{instance} has no revision {target.revision}")
        if not found.ran:
            raise NoRollbackTarget(
                f"{instance} revision {found.number} never ran (status {found.status})"
            )
        return found
    if target.kind == "time":
        assert target.time is not None
        found = running_at(history, target.time)
        if found is None:
            raise NoRollbackTarget(f"nothing was running on {instance} at {isoformat(target.time)}")
        return found
    if current is None:
        raise NoRollbackTarget(f"{instance} has no deployed revision to roll back from")
    assert current.deployed_at is not None
    earlier = [
        r
        for r in history
        if r.good
        and r.deployed_at is not None
        and (r.deployed_at, r.number) < (current.deployed_at, current.number)
        and r.manifest.hash != current.manifest.hash
    ]
    if not earlier:
        raise NoRollbackTarget(f"{instance} has no earlier good revision")
    return max(earlier, key=lambda r: (r.deployed_at, r.number))


def choose_rollback(
    instance: str,
    history: Sequence[Revision],
    target: RollbackTarget,
    *,
    now: datetime,
    advisories: Sequence[Advisory] = (),
    risk_acceptances: Sequence[RiskAcceptance] = (),
    pins: Sequence[Pin] = (),
    deadlines: Mapping[Severity, timedelta | None] = DEFAULT_DEADLINES,
) -> RollbackPlan:
    """Pick the revision to restore and check it against the security floor.

    `pins` are the active pins of the instance: they never block a rollback,
    each one the target breaks is reported in `warnings`.
    """
    chosen = _select(instance, history, target)
    components = chosen.manifest.components
    security = Security(advisories, risk_acceptances, now=now, deadlines=deadlines)
    accepted: list[RiskAcceptance] = []
    refused: list[str] = []
    for component, version in components.items():
        for finding in security.findings(instance, component, version):
            adv, ra = finding.advisory, finding.acceptance
            if finding.enforced:
                refused.append(f"{adv.id} ({adv.severity}) affects {adv.component} {version}")
            elif ra is not None and finding.severe:
                if not ra.reason.strip():
                    refused.append(
                        f"{adv.id} ({adv.severity}) affects {adv.component} {version} "
                        "(its risk acceptance gives no reason)"
                    )
                elif ra not in accepted:
                    accepted.append(ra)
    if refused:
        raise RollbackRefused(
            f"rollback of {instance} to revision {chosen.number} refused by the security "
            f"floor: {'; '.join(refused)}; give a risk acceptance with a reason to proceed"
        )
    warnings = [
        f"rollback breaks {pin.describe()} ({pin.component} {components[pin.component]})"
        for pin in pins
        if pin.component in components
        and not pin.spec.contains(components[pin.component], prereleases=True)
    ]
    warnings.extend(
        f"risk accepted by {ra.by} until {isoformat(ra.until)}: {ra.reason}" for ra in accepted
    )
    number = max((r.number for r in history), default=0) + 1
    return RollbackPlan(instance, chosen, number, chosen.number, tuple(warnings), tuple(accepted))
