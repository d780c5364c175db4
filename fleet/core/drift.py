"""Drift: what an instance runs, compared with what Fleet recorded it runs.

A component that was changed, added or removed behind Fleet's back is drift;
so is an instance that runs another manifest (hash) than the recorded one.
Versions are compared as PEP 440 versions (`2.4.0-rc.1` equals `2.4.0rc1`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from packaging.version import InvalidVersion, Version

__all__ = ["Drift", "compare"]


@dataclass(frozen=True, slots=True)
class Drift:
    """How one instance differs from its recorded manifest."""

    instance: str
    revision: int | None
    recorded_hash: str | None
    observed_hash: str | None
    differences: tuple[tuple[str, str | None, str | None], ...] = ()

    @property
    def drifted(self) -> bool:
        return bool(self.differences) or self.recorded_hash != self.observed_hash

    def describe(self) -> str:
        parts = [
            f"{c} recorded {r or '(none)'}, running {o or '(none)'}" for c, r, o in self.differences
        ]
        if not parts and self.drifted:
            parts.append(
                f"runs manifest {self.observed_hash or '(none)'}, "
                f"recorded {self.recorded_hash or '(none)'}"
            )
        return "; ".join(parts) or "in sync"


def _same(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a is b
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def compare(
    instance: str,
    *,
    revision: int | None,
    recorded: Mapping[str, str],
    recorded_hash: str | None,
    observed: Mapping[str, str],
    observed_hash: str | None,
) -> Drift:
    """Compare the recorded versions and hash with what the target reports.

    >>> compare("a", revision=2, recorded={"api": "1.1"}, recorded_hash="h",
    ...         observed={"api": "1.0"}, observed_hash="g").describe()
    'api recorded 1.1, running 1.0'
    """
    differences = tuple(
        (c, recorded.get(c), observed.get(c))
        for c in sorted(set(recorded) | set(observed))
        if not _same(recorded.get(c), observed.get(c))
    )
    return Drift(instance, revision, recorded_hash, observed_hash, differences)
