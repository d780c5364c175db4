"""Version pins at global, channel and instance level.

Every active pin that applies to an instance holds at once (global AND its
channel AND the instance): the allowed versions are the intersection of the
specifiers. An empty intersection is a pin conflict.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from packaging.specifiers import Specifier, SpecifierSet
from packaging.version import Version

from fleet.core.errors import InputError
from fleet.core.names import validate_name

__all__ = [
    "Pin",
    "PinScope",
    "applicable_pins",
    "conflicting_pins",
    "is_satisfiable",
]


@dataclass(frozen=True, slots=True, order=True)
class PinScope:
    """`global`, `channel:<name>` or `instance:<name>`."""

    kind: str
    name: str | None = None

    @classmethod
    def parse(cls, text: str) -> PinScope:
        """Read a scope.

        >>> PinScope.parse("channel:stable")
        PinScope(kind='channel', name='stable')
        """
        if text == "global":
            return cls("global")
        kind, sep, name = text.partition(":")
        if sep and kind in ("channel", "instance"):
            validate_name(name, kind=kind)
            return cls(kind, name)
        raise InputError(
            f"Invalid pin scope: {text!r} (expected global, channel:<name> or instance:<name>)"
        )

    def __str__(self) -> str:
        return "global" if self.kind == "global" else f"{self.kind}:{self.name}"

    def applies_to(self, *, instance: str, channel: str) -> bool:
        if self.kind == "global":
            return True
        if self.kind == "channel":
            return self.name == channel
        return self.name == instance


@dataclass(frozen=True, slots=True)
class Pin:
    scope: PinScope
    component: str
    spec: SpecifierSet
    reason: str
    author: str
    created_at: datetime
    expires_at: datetime | None = None

    def is_active(self, now: datetime) -> bool:
        return self.expires_at is None or now < self.expires_at

    def describe(self) -> str:
        """How a plan names this pin.

        >>> pin.describe()
        "global pin api<3 ('3.x data migration not ready')"
        """
        return f"{self.scope} pin {self.component}{self.spec} ({self.reason!r})"

    def short(self) -> str:
        return f"{self.scope} pin {self.spec}"


def applicable_pins(
    pins: Iterable[Pin], *, instance: str, channel: str, now: datetime
) -> tuple[list[Pin], list[Pin]]:
    """Split the pins that apply to an instance into (active, expired)."""
    active: list[Pin] = []
    expired: list[Pin] = []
    for pin in pins:
        if pin.scope.applies_to(instance=instance, channel=channel):
            (active if pin.is_active(now) else expired).append(pin)
    return active, expired


def _bump(release: tuple[int, ...]) -> tuple[int, ...]:
    return (*release[:-1], release[-1] + 1)


def _candidates(spec: Specifier) -> list[Version]:
    """Versions at and around one specifier's boundary."""
    text = spec.version
    wildcard = text.endswith(".*")
    if wildcard:
        text = text[:-2]
    try:
        base = Version(text)
    except ValueError:  # `===` arbitrary strings: nothing to probe
        return []
    release = base.release
    out = [base, Version(".".join(map(str, (*release, 0, 0, 0, 1))))]
    if wildcard:
        upper = _bump(release)
        out.append(Version(".".join(map(str, (*release, 999999)))))
        out.append(Version(".".join(map(str, upper))))
    elif release[-1] > 0:
        out.append(Version(".".join(map(str, (*release[:-1], release[-1] - 1, 999999)))))
    elif len(release) > 1:
        out.append(Version(".".join(map(str, (*release[:-1], 0)))))
    out.append(Version(".".join(map(str, _bump(release)))))
    return out


def is_satisfiable(spec: SpecifierSet, extra: Iterable[Version] = ()) -> bool:
    """Whether any version at all meets `spec` (not only a released one).

    Probes the versions at and just around every boundary in `spec` (plus
    `extra`); an interval of versions that meets every specifier always
    contains one of them for the specifiers people write.

    >>> is_satisfiable(SpecifierSet("<3,>=3"))
    False
    """
    probes: list[Version] = list(extra)
    for one in spec:
        probes.extend(_candidates(one))
    if not probes:
        return True
    return any(spec.contains(v, prereleases=True) for v in probes)


def conflicting_pins(pins: Sequence[Pin], extra: Iterable[Version] = ()) -> list[Pin] | None:
    """The smallest set of `pins` (one component) whose intersection is empty, or None.

    >>> [p.short() for p in conflicting_pins([global_lt3, channel_ge3])]
    ['global pin <3', 'channel:beta pin >=3']
    """
    probes = list(extra)
    combined = SpecifierSet()
    for pin in pins:
        combined &= pin.spec
    if is_satisfiable(combined, probes):
        return None
    needed = list(pins)
    for pin in list(pins):
        rest = [p for p in needed if p is not pin]
        spec = SpecifierSet()
        for p in rest:
            spec &= p.spec
        if not is_satisfiable(spec, probes):
            needed = rest
    return needed
