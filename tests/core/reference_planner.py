"""A deliberately naive planner, written from DESIGN.md's rules alone.

It shares no code with `fleet.core.plan` beyond the value types and OSV's
`Advisory.affects`: it enumerates every manifest a small fleet allows, filters
each rule literally, and picks by the stated order. It is slow on purpose and
checks the fast one (tests/core/test_reference_planner.py).

The rules, as this file reads them:
- error: a current version not in the registry; two or more active pins on one
  component that no version meets together; no compatible manifest.
- eligible: in the registry, not yanked, meets the channel constraint, final
  unless the channel allows pre-releases, soaked, meets every active pin, and
  no known hole: no open advisory (not risk-accepted on the instance) that is
  medium or above, or enforced, affects it.
- choices per component: the current version and every eligible version above
  it; a component that is not installed may also stay uninstalled (the lowest
  choice). Every `requires` must hold; a requirement on a component that is
  not installed is not met. The answer is the lexicographically greatest
  manifest in declared component order.
- enforced: critical, or past its severity's deadline; and not risk-accepted.
- a component whose current version an enforced advisory affects has fix
  options: versions in the registry, not yanked, at or above the current one,
  final unless pre-releases are allowed; first those no known hole affects,
  then those no enforced advisory affects; each group smallest first, the same
  release line (major.minor) first. No option at all: "no fix available".
- when some component has options: `enforce-security`. An auto-update
  instance takes the normal manifest when it frees every such component of its
  enforced advisories; otherwise (and always when frozen or manual) only those
  components move, to the first combination of options (in order) that keeps
  every `requires`; none is an error.
- otherwise: noop when nothing changes, else skip-frozen, needs-approval or
  deploy by the effective policy.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from packaging.version import Version

from fleet.core.advisories import Advisory, Severity
from fleet.core.instances import Instance
from fleet.core.pins import Pin
from fleet.core.state import FleetState
from fleet.core.versions import ComponentVersion

ABSENT = None


@dataclass(frozen=True)
class Expected:
    decision: str
    manifest: dict[str, Version | None]
    no_fix: frozenset[tuple[str, str]] = frozenset()


def _deadline_passed(state: FleetState, adv: Advisory, now: datetime) -> bool:
    delta = state.deadlines.get(adv.severity)
    return delta is not None and now >= adv.published_at + delta


def _accepted(state: FleetState, inst: Instance, adv: Advisory, now: datetime) -> bool:
    return any(
        ra.instance == inst.name and ra.advisory == adv.id and now < ra.until
        for ra in state.risk_acceptances
    )


def _enforced(state: FleetState, inst: Instance, adv: Advisory, now: datetime) -> bool:
    if _accepted(state, inst, adv, now):
        return False
    return adv.severity is Severity.CRITICAL or _deadline_passed(state, adv, now)


def _hole(state: FleetState, inst: Instance, adv: Advisory, now: datetime) -> bool:
    if _accepted(state, inst, adv, now):
        return False
    serious = adv.severity in (Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL)
    return serious or _enforced(state, inst, adv, now)


def _affecting(state: FleetState, component: str, version: Version) -> list[Advisory]:
    return [a for a in state.advisories if a.component == component and a.affects(version)]


def _pins(state: FleetState, inst: Instance, now: datetime) -> list[Pin]:
    out = []
    for p in state.pins:
        applies = (
            p.scope.kind == "global"
            or (p.scope.kind == "channel" and p.scope.name == inst.channel)
            or (p.scope.kind == "instance" and p.scope.name == inst.name)
        )
        if applies and (p.expires_at is None or now < p.expires_at):
            out.append(p)
    return out


def _probe_versions() -> list[Version]:
    """Enough versions to tell whether the small specifiers of the tests intersect."""
    out = []
    for major in range(5):
        for minor in range(5):
            for patch in range(5):
                out.append(Version(f"{major}.{minor}.{patch}"))
                out.append(Version(f"{major}.{minor}.{patch}rc1"))
                out.append(Version(f"{major}.{minor}.{patch}.1"))
    return out


_PROBES = _probe_versions()


def _fits(manifest: dict[str, ComponentVersion | None]) -> bool:
    for cv in manifest.values():
        if cv is None:
            continue
        for other, spec in cv.requires.items():
            mine = manifest.get(other)
            if mine is None or not spec.contains(mine.version, prereleases=True):
                return False
    return True


def _line(version: Version) -> tuple[int, int]:
    release = (*version.release, 0)
    return release[0], release[1]


def _options(
    state: FleetState,
    inst: Instance,
    component: str,
    current: Version,
    prereleases: bool,
    now: datetime,
) -> list[ComponentVersion]:
    base = sorted(
        (
            cv
            for cv in state.registry.versions(component)
            if cv.version >= current
            and not cv.yanked
            and (prereleases or not cv.version.is_prerelease)
        ),
        key=lambda cv: cv.version,
    )
    clean = [
        cv
        for cv in base
        if not any(_hole(state, inst, a, now) for a in _affecting(state, component, cv.version))
    ]
    carrying = [
        cv
        for cv in base
        if cv not in clean
        and not any(
            _enforced(state, inst, a, now) for a in _affecting(state, component, cv.version)
        )
    ]
    line = _line(current)

    def same_line_first(group: Sequence[ComponentVersion]) -> list[ComponentVersion]:
        return [cv for cv in group if _line(cv.version) == line] + [
            cv for cv in group if _line(cv.version) != line
        ]

    return same_line_first(clean) + same_line_first(carrying)


def reference_plan(state: FleetState, inst: Instance, now: datetime) -> Expected:
    channel = state.channels[inst.channel]
    policy = inst.policy_override or channel.policy
    pins = _pins(state, inst, now)
    order = state.components
    current = {c: inst.current.get(c) for c in order}

    def error() -> Expected:
        return Expected("error", dict(current))

    for c, v in current.items():
        if v is not None and state.registry.find(c, v) is None:
            return error()
    for c in order:
        mine = [p for p in pins if p.component == c]
        if len(mine) > 1:
            probes = _PROBES + [cv.version for cv in state.registry.versions(c)]
            if not any(all(p.spec.contains(v, prereleases=True) for p in mine) for v in probes):
                return error()

    def eligible(c: str, cv: ComponentVersion) -> bool:
        return (
            not cv.yanked
            and channel.constraint.contains(cv.version, prereleases=True)
            and (channel.allow_prereleases or not cv.version.is_prerelease)
            and cv.released_at + channel.soak <= now
            and all(p.spec.contains(cv.version, prereleases=True) for p in pins if p.component == c)
            and not any(_hole(state, inst, a, now) for a in _affecting(state, c, cv.version))
        )

    choices: list[list[ComponentVersion | None]] = []
    for c in order:
        here: list[ComponentVersion | None] = []
        floor = current[c]
        for cv in state.registry.versions(c):
            if (floor is not None and cv.version == floor) or (
                (floor is None or cv.version > floor) and eligible(c, cv)
            ):
                here.append(cv)
        if floor is None:
            here.append(ABSENT)
        choices.append(here)

    def rank(combo: Sequence[ComponentVersion | None]) -> tuple[tuple[int, Version], ...]:
        return tuple((0, Version("0")) if cv is None else (1, cv.version) for cv in combo)

    compatible = [
        combo
        for combo in itertools.product(*choices)
        if _fits(dict(zip(order, combo, strict=True)))
    ]
    if not compatible:
        return error()
    best = max(compatible, key=rank)
    normal = {c: None if cv is None else cv.version for c, cv in zip(order, best, strict=True)}

    enforced: dict[str, list[Advisory]] = {}
    for c, v in current.items():
        if v is None:
            continue
        for a in _affecting(state, c, v):
            if _enforced(state, inst, a, now):
                enforced.setdefault(c, []).append(a)
    options = {
        c: _options(state, inst, c, current[c], channel.allow_prereleases, now)  # type: ignore[arg-type]
        for c in enforced
    }
    no_fix = frozenset(a.key for c, advs in enforced.items() if not options[c] for a in advs)
    fixable = [c for c in order if c in enforced and options[c]]
    if fixable:
        frees = all(
            normal[c] is not None and not any(a.affects(normal[c]) for a in enforced[c])  # type: ignore[arg-type]
            for c in fixable
        )
        if policy == "auto-update" and frees:
            return Expected("enforce-security", normal, no_fix)
        for combo in itertools.product(*(options[c] for c in fixable)):
            manifest = {
                c: None if current[c] is None else state.registry.find(c, current[c])  # type: ignore[arg-type]
                for c in order
            }
            manifest.update(dict(zip(fixable, combo, strict=True)))
            if _fits(manifest):
                return Expected(
                    "enforce-security",
                    {c: None if cv is None else cv.version for c, cv in manifest.items()},
                    no_fix,
                )
        return error()

    if normal == current:
        return Expected("noop", normal, no_fix)
    decision = {
        "frozen": "skip-frozen",
        "manual-approval": "needs-approval",
        "auto-update": "deploy",
    }[str(policy)]
    return Expected(decision, normal, no_fix)
