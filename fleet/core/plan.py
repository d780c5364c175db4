"""Compile: for every targeted instance, the versions it should run and why.

`compile_plan(state, now)` is a value: print it, diff it, test it. Per
instance it computes the eligible versions, resolves pins and compatibility,
applies security enforcement, compares with what runs now, and decides one of
`noop`, `deploy`, `needs-approval`, `skip-frozen`, `enforce-security`,
`error`. One instance's error never stops the others.

A `PlanMemo` keeps what a compile works out independently of `now`, so that
the next compile of the same state (another instance, a later time) skips it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from fleet.core.advisories import Advisory, RiskAcceptance, deadline_of, is_enforced
from fleet.core.channels import Channel, Policy, effective_policy
from fleet.core.durations import format_duration, isoformat, require_aware
from fleet.core.errors import (
    IncompatibleError,
    InputError,
    PinConflictError,
    PlanError,
    SecurityFixError,
    UnknownVersionError,
)
from fleet.core.instances import Instance
from fleet.core.manifests import Manifest
from fleet.core.pins import Pin, conflicting_pins
from fleet.core.state import FleetState
from fleet.core.versions import ComponentVersion, release_line

__all__ = [
    "AdvisoryFlag",
    "ComponentPlan",
    "Decision",
    "InstancePlan",
    "Override",
    "Plan",
    "PlanMemo",
    "compile_plan",
    "plan_summary",
]


class Decision(StrEnum):
    NOOP = "noop"
    DEPLOY = "deploy"
    NEEDS_APPROVAL = "needs-approval"
    SKIP_FROZEN = "skip-frozen"
    ENFORCE_SECURITY = "enforce-security"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class ComponentPlan:
    """One component's `from -> to` and the reason in plain words."""

    component: str
    from_version: Version | None
    to_version: Version | None
    reason: str

    @property
    def changed(self) -> bool:
        return self.from_version != self.to_version

    def to_json(self) -> dict[str, Any]:
        return {
            "from": None if self.from_version is None else str(self.from_version),
            "to": None if self.to_version is None else str(self.to_version),
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class AdvisoryFlag:
    """An advisory that affects what the instance runs now."""

    advisory: Advisory
    deadline: datetime | None
    enforced: bool
    fixed_by_plan: bool
    risk_acceptance: RiskAcceptance | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.advisory.id,
            "component": self.advisory.component,
            "severity": str(self.advisory.severity),
            "deadline": None if self.deadline is None else isoformat(self.deadline),
            "enforced": self.enforced,
            "fixed_by_plan": self.fixed_by_plan,
        }
        if self.risk_acceptance is not None:
            out["risk_accepted"] = {
                "by": self.risk_acceptance.by,
                "reason": self.risk_acceptance.reason,
                "until": isoformat(self.risk_acceptance.until),
            }
        return out


@dataclass(frozen=True, slots=True)
class Override:
    """A rule that a security fix broke on purpose (a pin, the soak, the constraint)."""

    advisory: str
    component: str
    version: Version
    rule: str
    pin: Pin | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "advisory": self.advisory,
            "component": self.component,
            "version": str(self.version),
            "rule": self.rule,
        }
        if self.pin is not None:
            out["pin"] = {
                "scope": str(self.pin.scope),
                "spec": str(self.pin.spec),
                "reason": self.pin.reason,
                "author": self.pin.author,
            }
        return out


@dataclass(frozen=True, slots=True)
class InstancePlan:
    instance: str
    channel: str
    policy: Policy
    decision: Decision
    approvals_required: int
    components: tuple[ComponentPlan, ...]
    advisories: tuple[AdvisoryFlag, ...] = ()
    overrides: tuple[Override, ...] = ()
    warnings: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()

    @property
    def changes(self) -> tuple[ComponentPlan, ...]:
        return tuple(c for c in self.components if c.changed)

    @property
    def manifest(self) -> Manifest | None:
        """The manifest this plan would deploy (None on error)."""
        if self.decision is Decision.ERROR:
            return None
        return Manifest({c.component: c.to_version for c in self.components if c.to_version})

    @property
    def pin_overrides(self) -> tuple[Override, ...]:
        return tuple(o for o in self.overrides if o.pin is not None)

    def to_json(self) -> dict[str, Any]:
        return {
            "instance": self.instance,
            "channel": self.channel,
            "policy": str(self.policy),
            "decision": str(self.decision),
            "approvals_required": self.approvals_required,
            "components": {c.component: c.to_json() for c in self.components},
            "advisories": [a.to_json() for a in self.advisories],
            "pin_overrides": [o.to_json() for o in self.pin_overrides],
            "overrides": [o.to_json() for o in self.overrides if o.pin is None],
            "warnings": list(self.warnings),
            "errors": list(self.errors),
        }


@dataclass(frozen=True, slots=True)
class Plan:
    at: datetime
    instances: tuple[InstancePlan, ...]

    def counts(self) -> dict[str, int]:
        out = {str(d): 0 for d in Decision}
        for item in self.instances:
            out[str(item.decision)] += 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {"at": isoformat(self.at), "instances": [i.to_json() for i in self.instances]}


def compile_plan(
    state: FleetState,
    now: datetime,
    *,
    instances: Collection[str] | None = None,
    channels: Collection[str] | None = None,
    labels: Mapping[str, str] | None = None,
    memo: PlanMemo | None = None,
) -> Plan:
    """Plan every instance selected (all when no selector is given), in file order.

    `memo` carries the work that does not depend on `now` from one compile
    of `state` to the next; without one, the compile makes its own.

    >>> plan = compile_plan(state, datetime(2026, 11, 26, 12, tzinfo=timezone.utc))
    >>> plan.instances[0].decision
    <Decision.DEPLOY: 'deploy'>
    """
    require_aware(now, what="plan time")
    candidates: Sequence[Instance] = state.instances
    if memo is None:
        memo = PlanMemo(state)
    elif memo.state is not state:
        raise InputError("Invalid plan memo: it was made for another fleet state")
    elif instances:
        # An index of names pays for itself only when the memo is used again.
        candidates = memo.named(instances)
    planner = _Planner(memo, now)
    selected = [
        inst
        for inst in candidates
        if (not instances or inst.name in instances)
        and (not channels or inst.channel in channels)
        and (not labels or all(inst.labels.get(k) == v for k, v in labels.items()))
    ]
    return Plan(now, tuple(planner.plan(inst) for inst in selected))


class PlanMemo:
    """What a compile of one `FleetState` can keep whatever the plan time.

    Spec checks, compatibility, affecting advisories, pin clashes and the
    channel rules that do not wait for time (constraint, pre-releases,
    yanks) are the same at every `now`; a preview of one instance is mostly
    this work, so a caller that compiles the same state again and again
    (the API, per request) keeps a memo with the state and passes it in.
    Everything that depends on `now` (soak, pin expiry, deadlines, risk
    acceptances, windows, and the resolutions built on them) stays in
    each compile.

    A memo keeps its state alive, so the identity of the state's objects is
    a safe key. Several threads may share one: every cache is filled by
    single lookups and stores of values that are never changed afterwards
    (two threads may compute the same value, which is harmless), and the
    tables that are iterated are built here, once.

    >>> memo = PlanMemo(state)
    >>> compile_plan(state, now, instances=["acme-prod"], memo=memo).instances[0].instance
    'acme-prod'
    """

    def __init__(self, state: FleetState) -> None:
        self.state = state
        self.order = state.components
        self.pin_ids = {id(pin): i for i, pin in enumerate(state.pins)}
        pins_by_scope: dict[tuple[str, str | None], list[Pin]] = {}
        for pin in state.pins:
            pins_by_scope.setdefault((pin.scope.kind, pin.scope.name), []).append(pin)
        self.pins_by_scope = {k: tuple(v) for k, v in pins_by_scope.items()}
        advisories_by_component: dict[str, list[Advisory]] = {}
        for adv in state.advisories:
            advisories_by_component.setdefault(adv.component, []).append(adv)
        self.advisories_by_component = {k: tuple(v) for k, v in advisories_by_component.items()}
        # Enforcement is decided per advisory id; should an id repeat, the last one listed decides.
        self.advisories_by_id = {adv.id: adv for adv in state.advisories}
        acceptances: dict[tuple[str, str], list[RiskAcceptance]] = {}
        for ra in state.risk_acceptances:
            acceptances.setdefault((ra.instance, ra.advisory), []).append(ra)
        self.acceptances = {k: tuple(v) for k, v in acceptances.items()}
        self.related = _related_pairs(state)
        self._positions: dict[str, list[int]] | None = None
        self._contains: dict[tuple[int, Version], bool] = {}
        self._compat: dict[tuple[int, int], bool] = {}
        self._affecting: dict[tuple[str, Version], tuple[Advisory, ...]] = {}
        self._pin_clashes: dict[tuple[int, ...], list[Pin] | None] = {}
        self._eligible: dict[tuple[str, str], tuple[ComponentVersion, ...]] = {}
        self._rules: dict[tuple[str, int, tuple[int, ...]], str | None] = {}
        self._domains: dict[_Key, tuple[ComponentVersion, ...]] = {}
        self._notes: dict[int, str] = {}

    def named(self, names: Collection[str]) -> list[Instance]:
        """The instances called `names`, in file order, without a scan of the fleet."""
        positions = self._positions
        if positions is None:
            positions = {}
            for i, inst in enumerate(self.state.instances):
                positions.setdefault(inst.name, []).append(i)
            self._positions = positions
        found = sorted({i for name in set(names) for i in positions.get(name, ())})
        return [self.state.instances[i] for i in found]

    def meets(self, spec: SpecifierSet, version: Version) -> bool:
        # Specifier sets live as long as the state, so their identity is a
        # safe and cheap key (spelling them out is what costs).
        key = (id(spec), version)
        hit = self._contains.get(key)
        if hit is None:
            hit = spec.contains(version, prereleases=True)
            self._contains[key] = hit
        return hit

    def compatible(self, a: ComponentVersion, b: ComponentVersion) -> bool:
        key = (id(a), id(b))
        hit = self._compat.get(key)
        if hit is None:
            spec_ab = a.requires.get(b.component)
            spec_ba = b.requires.get(a.component)
            hit = (spec_ab is None or self.meets(spec_ab, b.version)) and (
                spec_ba is None or self.meets(spec_ba, a.version)
            )
            self._compat[key] = hit
            self._compat[(id(b), id(a))] = hit
        return hit

    def affecting(self, component: str, version: Version) -> tuple[Advisory, ...]:
        key = (component, version)
        hit = self._affecting.get(key)
        if hit is None:
            hit = tuple(
                a for a in self.advisories_by_component.get(component, ()) if a.affects(version)
            )
            self._affecting[key] = hit
        return hit

    def pin_clash(
        self, component: str, pins: Sequence[Pin], pin_ids: tuple[int, ...]
    ) -> list[Pin] | None:
        """The pins of one component that no version can meet together, or None."""
        if pin_ids in self._pin_clashes:
            return self._pin_clashes[pin_ids]
        probes = [cv.version for cv in self.state.registry.versions(component)]
        clash = self._pin_clashes[pin_ids] = conflicting_pins(pins, probes)
        return clash

    def rule(
        self, channel: Channel, cv: ComponentVersion, pins: Sequence[Pin], pin_ids: tuple[int, ...]
    ) -> str | None:
        """The first rule other than soak that makes `cv` ineligible, in words.

        The channel's constraint and the pins come first: they are the rules
        an operator set on purpose, and the plan names them before the rest.
        """
        key = (channel.name, id(cv), pin_ids)
        if key in self._rules:
            return self._rules[key]
        words: str | None = None
        if len(channel.constraint) and not self.meets(channel.constraint, cv.version):
            words = f"channel constraint {channel.constraint}"
        else:
            for pin in pins:
                if not self.meets(pin.spec, cv.version):
                    words = pin.short()
                    break
            else:
                if cv.version.is_prerelease and not channel.allow_prereleases:
                    words = f"final releases only ({channel.name} allows no pre-releases)"
                elif cv.yanked:
                    why = f": {cv.yanked_reason}" if cv.yanked_reason else ""
                    words = f"not yanked ({cv.component} {cv.version} is yanked{why})"
        self._rules[key] = words
        return words

    def eligible(self, channel: Channel, component: str) -> tuple[ComponentVersion, ...]:
        """Channel-level eligibility before the soak (pins come later), newest first."""
        key = (channel.name, component)
        hit = self._eligible.get(key)
        if hit is None:
            hit = tuple(
                cv
                for cv in self.state.registry.versions(component)
                if self.rule(channel, cv, (), ()) is None
            )
            self._eligible[key] = hit
        return hit

    def domain(
        self,
        channel: Channel,
        component: str,
        floor: ComponentVersion | None,
        pins: Sequence[Pin],
        pin_ids: tuple[int, ...],
    ) -> tuple[ComponentVersion, ...]:
        """`eligible` cut at the floor and to the pins, newest first (no soak, no floor)."""
        key: _Key = (channel.name, component, id(floor), pin_ids)
        hit = self._domains.get(key)
        if hit is None:
            kept: list[ComponentVersion] = []
            for cv in self.eligible(channel, component):
                if floor is not None and cv.version < floor.version:
                    break  # newest first: everything after is lower still
                if all(self.meets(p.spec, cv.version) for p in pins):
                    kept.append(cv)
            hit = self._domains[key] = tuple(kept)
        return hit

    def expired_note(self, pin: Pin) -> str:
        note = self._notes.get(id(pin))
        if note is None:
            assert pin.expires_at is not None
            note = f"expired pin ignored: {pin.describe()} expired {isoformat(pin.expires_at)}"
            self._notes[id(pin)] = note
        return note


def _related_pairs(state: FleetState) -> frozenset[tuple[str, str]]:
    """Pairs of components linked by at least one `requires`, both ways."""
    pairs: set[tuple[str, str]] = set()
    for cv in state.registry:
        for other in cv.requires:
            pairs.add((cv.component, other))
            pairs.add((other, cv.component))
    return frozenset(pairs)


# --- resolution --------------------------------------------------------------


@dataclass(slots=True)
class _Resolution:
    """The result of resolving one (channel, current, pins) combination."""

    manifest: dict[str, Version | None]
    reasons: dict[str, str]
    warnings: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _SecurityFix:
    manifest: dict[str, Version | None]
    reasons: dict[str, str]
    overrides: list[Override]


_Key = tuple[Any, ...]


class _Planner:
    """Plans instances one by one at `now`, sharing every cache across the fleet.

    Instances that share a channel, a current manifest and the same pins get
    the same resolution, so a fleet of thousands resolves only its distinct
    combinations. What does not depend on `now` is asked of the memo, which
    may outlive this compile; what does (soak, expiry, enforcement, and the
    domains, resolutions and reasons built on them) is kept here.
    """

    def __init__(self, memo: PlanMemo, now: datetime) -> None:
        self.memo = memo
        self.state = memo.state
        self.now = now
        self.order = memo.order
        self.pin_ids = memo.pin_ids
        self.pins_by_scope = memo.pins_by_scope
        self.deadlines = memo.state.deadlines
        self._related = memo.related
        self._meets: Callable[[SpecifierSet, Version], bool] = memo.meets
        self._compatible: Callable[[ComponentVersion, ComponentVersion], bool] = memo.compatible
        self.affecting: Callable[[str, Version], tuple[Advisory, ...]] = memo.affecting
        self._enforced: dict[str, bool] = {}
        self._accepted: dict[tuple[str, str], RiskAcceptance | None] = {}
        self._resolutions: dict[_Key, _Resolution | PlanError] = {}
        self._fixes: dict[_Key, _SecurityFix | PlanError] = {}
        self._window_notes: dict[str, str] = {}
        self._reasons: dict[_Key, str] = {}
        self._domains: dict[_Key, list[ComponentVersion]] = {}

    # -- small cached predicates --

    def _is_enforced(self, adv: Advisory) -> bool:
        hit = self._enforced.get(adv.id)
        if hit is None:
            deciding = self.memo.advisories_by_id[adv.id]
            hit = self._enforced[adv.id] = is_enforced(deciding, self.now, self.deadlines)
        return hit

    def _acceptance(self, instance: str, advisory: str) -> RiskAcceptance | None:
        """The active risk acceptance of `advisory` on `instance` (the last one listed)."""
        key = (instance, advisory)
        if key in self._accepted:
            return self._accepted[key]
        found = None
        for ra in reversed(self.memo.acceptances.get(key, ())):
            if ra.is_active(self.now):
                found = ra
                break
        self._accepted[key] = found
        return found

    def _soaked(self, channel: Channel, cv: ComponentVersion) -> bool:
        return cv.released_at + channel.soak <= self.now

    def _blocker(
        self,
        channel: Channel,
        cv: ComponentVersion,
        pins: Sequence[Pin],
        pin_ids: tuple[int, ...],
    ) -> str | None:
        """The first rule that makes `cv` ineligible, in words; None when eligible.

        The soak comes last: it is the only rule that passes with time.
        """
        words = self.memo.rule(channel, cv, pins, pin_ids)
        if words is None and not self._soaked(channel, cv):
            ready = isoformat(cv.released_at + channel.soak)
            words = (
                f"soak {format_duration(channel.soak)} "
                f"({cv.component} {cv.version} is eligible from {ready})"
            )
        return words

    # -- per instance --

    def plan(self, inst: Instance) -> InstancePlan:
        channel = self.state.channels[inst.channel]
        policy = effective_policy(channel, inst.policy_override)
        active: list[Pin] = []
        expired: list[Pin] = []
        for scope in (("global", None), ("channel", inst.channel), ("instance", inst.name)):
            for p in self.pins_by_scope.get(scope, ()):
                (active if p.is_active(self.now) else expired).append(p)
        warnings = [self.memo.expired_note(p) for p in expired]
        current = {c: inst.current.get(c) for c in self.order}
        pin_key = tuple(sorted(self.pin_ids[id(p)] for p in active))
        key: _Key = (inst.channel, tuple(current.values()), pin_key)

        resolution = self._resolutions.get(key)
        if resolution is None:
            try:
                resolution = self._resolve(channel, current, active)
            except PlanError as exc:
                resolution = exc
            self._resolutions[key] = resolution
        if isinstance(resolution, PlanError):
            return self._error(inst, channel, policy, current, resolution, warnings)
        warnings.extend(resolution.warnings)

        flags, enforced = self._advisories(inst, current, resolution.manifest)
        if enforced:
            return self._enforce(
                inst, channel, policy, current, active, resolution, flags, enforced, warnings
            )

        components = self._components(current, resolution.manifest, resolution.reasons)
        changed = any(c.changed for c in components)
        if not changed:
            decision, approvals = Decision.NOOP, 0
        elif policy is Policy.FROZEN:
            decision, approvals = Decision.SKIP_FROZEN, 0
        elif policy is Policy.MANUAL_APPROVAL:
            decision, approvals = Decision.NEEDS_APPROVAL, channel.approvals_required
        else:
            decision, approvals = Decision.DEPLOY, 0
            if channel.maintenance_window is not None:
                warnings.append(self._window_note(channel))
        return InstancePlan(
            inst.name,
            inst.channel,
            policy,
            decision,
            approvals,
            components,
            tuple(flags),
            (),
            tuple(warnings),
        )

    def _window_note(self, channel: Channel) -> str:
        note = self._window_notes.get(channel.name)
        if note is None:
            assert channel.maintenance_window is not None
            opens = channel.maintenance_window.next_open(self.now)
            when = "open now" if opens <= self.now else f"next opens {isoformat(opens)}"
            note = self._window_notes[channel.name] = f"deploys in the maintenance window ({when})"
        return note

    def _error(
        self,
        inst: Instance,
        channel: Channel,
        policy: Policy,
        current: Mapping[str, Version | None],
        error: PlanError,
        warnings: list[str],
    ) -> InstancePlan:
        components = tuple(
            ComponentPlan(c, v, v, "unchanged: the instance cannot be planned")
            for c, v in current.items()
            if v is not None
        )
        flags, _ = self._advisories(inst, current, dict(current))
        return InstancePlan(
            inst.name,
            inst.channel,
            policy,
            Decision.ERROR,
            0,
            components,
            tuple(flags),
            (),
            tuple(warnings),
            (str(error),),
        )

    def _components(
        self,
        current: Mapping[str, Version | None],
        target: Mapping[str, Version | None],
        reasons: Mapping[str, str],
    ) -> tuple[ComponentPlan, ...]:
        return tuple(
            ComponentPlan(c, current[c], target[c], reasons[c])
            for c in self.order
            if current[c] is not None or target[c] is not None
        )

    def _advisories(
        self,
        inst: Instance,
        current: Mapping[str, Version | None],
        target: Mapping[str, Version | None],
    ) -> tuple[list[AdvisoryFlag], list[Advisory]]:
        flags: list[AdvisoryFlag] = []
        enforced: list[Advisory] = []
        for component, version in current.items():
            if version is None:
                continue
            for adv in self.affecting(component, version):
                accepted = self._acceptance(inst.name, adv.id)
                is_forced = accepted is None and self._is_enforced(adv)
                new = target.get(component)
                fixed = new is not None and adv not in self.affecting(component, new)
                flags.append(
                    AdvisoryFlag(adv, deadline_of(adv, self.deadlines), is_forced, fixed, accepted)
                )
                if is_forced:
                    enforced.append(adv)
        return flags, enforced

    # -- normal resolution --

    def _resolve(
        self, channel: Channel, current: Mapping[str, Version | None], pins: Sequence[Pin]
    ) -> _Resolution:
        registry = self.state.registry
        pins_by_component: dict[str, list[Pin]] = {}
        for pin in pins:
            pins_by_component.setdefault(pin.component, []).append(pin)

        warnings: list[str] = []
        domains: list[list[ComponentVersion]] = []
        floors: dict[str, ComponentVersion | None] = {}
        for component in self.order:
            version = current[component]
            floor = None
            if version is not None:
                floor = registry.find(component, version)
                if floor is None:
                    raise UnknownVersionError(
                        f"{component} {version} is not in the version registry"
                    )
            comp_pins = pins_by_component.get(component, [])
            pin_ids = tuple(self.pin_ids[id(p)] for p in comp_pins)
            if len(comp_pins) > 1:
                clash = self.memo.pin_clash(component, comp_pins, pin_ids)
                if clash:
                    names = "; ".join(p.describe() for p in clash)
                    raise PinConflictError(f"pin conflict on {component}: {names}")
            floors[component] = floor
            domains.append(self._domain(channel, component, floor, comp_pins, pin_ids))

        chosen = self._search(domains)
        if chosen is None:
            raise IncompatibleError(self._explain_clash(domains))

        manifest: dict[str, Version | None] = {c: None for c in self.order}
        by_component = {cv.component: cv for cv in chosen}
        for component, floor in floors.items():
            if floor is None or by_component.get(component) is not floor:
                continue
            for pin in pins_by_component.get(component, []):
                if not self._meets(pin.spec, floor.version):
                    warnings.append(
                        f"{component} {floor.version} breaks {pin.describe()}; "
                        "kept (compile never lowers a version)"
                    )
        for component in self.order:
            cv = by_component.get(component)
            manifest[component] = None if cv is None else cv.version
        reasons = {}
        for component in self.order:
            floor, chosen_cv = floors[component], by_component.get(component)
            comp_pins = pins_by_component.get(component, [])
            comp_pin_ids = tuple(self.pin_ids[id(p)] for p in comp_pins)
            # The reason depends on the chosen versions of related components only.
            key: _Key = (
                channel.name,
                component,
                id(floor),
                id(chosen_cv),
                comp_pin_ids,
                tuple(
                    id(cv)
                    for other, cv in by_component.items()
                    if (component, other) in self._related
                ),
            )
            text = self._reasons.get(key)
            if text is None:
                text = self._reason(
                    channel, component, floor, chosen_cv, comp_pins, comp_pin_ids, by_component
                )
                self._reasons[key] = text
            reasons[component] = text
        return _Resolution(manifest, reasons, warnings)

    def _domain(
        self,
        channel: Channel,
        component: str,
        floor: ComponentVersion | None,
        pins: Sequence[Pin],
        pin_ids: tuple[int, ...],
    ) -> list[ComponentVersion]:
        """Eligible versions at or above the floor that meet the pins, newest
        first, then the floor itself (compile keeps it when nothing is better).

        The memo's domain has every rule but the soak; the soak is applied here."""
        key: _Key = (channel.name, component, id(floor), pin_ids)
        hit = self._domains.get(key)
        if hit is None:
            static = self.memo.domain(channel, component, floor, pins, pin_ids)
            hit = [cv for cv in static if self._soaked(channel, cv)]
            if floor is not None and (not hit or hit[-1] is not floor):
                hit.append(floor)
            self._domains[key] = hit
        return hit

    def _search(
        self, domains: Sequence[Sequence[ComponentVersion]]
    ) -> list[ComponentVersion] | None:
        """The lexicographically greatest compatible manifest, or None.

        Depth-first in declared order, newest first, so the first complete
        assignment found is the answer. Three things keep it small without
        changing that answer: forward checking (an assignment that leaves a
        later component nothing is skipped) and memoised failures (a subtree
        that failed fails again whenever the earlier components it depends
        on are the same), so two clashing components late in the order cost
        a few steps per choice of the earlier ones, not their product.
        When the search fails, arc consistency names the clash.

        An empty domain (a component that is neither installed nor has an
        eligible version) is left out of the manifest.
        """
        present = [list(d) for d in domains if d]
        if not present:
            return []
        related = self._related
        names = [d[0].component for d in present]
        # For each level, the earlier levels that touch it or anything after it.
        depends = [
            tuple(
                j
                for j in range(level)
                if any((names[j], names[k]) in related for k in range(level, len(names)))
            )
            for level in range(len(names))
        ]
        failed: set[tuple[int, tuple[int, ...]]] = set()

        def extend(
            level: int, chosen: list[ComponentVersion], rest: list[list[ComponentVersion]]
        ) -> list[ComponentVersion] | None:
            if level == len(present):
                return chosen
            key = (level, tuple(id(chosen[j]) for j in depends[level]))
            if key in failed:
                return None
            for cv in rest[0]:
                pruned: list[list[ComponentVersion]] = []
                for future in rest[1:]:
                    if (cv.component, future[0].component) in related:
                        future = [w for w in future if self._compatible(cv, w)]
                        if not future:
                            break
                    pruned.append(future)
                else:
                    found = extend(level + 1, [*chosen, cv], pruned)
                    if found is not None:
                        return found
            failed.add(key)
            return None

        return extend(0, [], present)

    def _arc_consistent(self, domains: list[list[ComponentVersion]]) -> str | None:
        """Prune `domains` in place (AC-3); on a wipe-out, the clash in words."""
        related = self._related
        index = {d[0].component: i for i, d in enumerate(domains)}
        queue = [
            (a, b)
            for a in range(len(domains))
            for b in range(len(domains))
            if a != b and (domains[a][0].component, domains[b][0].component) in related
        ]
        pending = set(queue)
        while queue:
            a, b = queue.pop(0)
            pending.discard((a, b))
            before = domains[a]
            kept = [x for x in before if any(self._compatible(x, y) for y in domains[b])]
            if len(kept) == len(before):
                continue
            if not kept:
                return self._pair_clash(before, domains[b])
            domains[a] = kept
            name = kept[0].component
            for other, i in index.items():
                if i != a and i != b and (other, name) in related and (i, a) not in pending:
                    queue.append((i, a))
                    pending.add((i, a))
        return None

    def _pair_clash(
        self, left: Sequence[ComponentVersion], right: Sequence[ComponentVersion]
    ) -> str:
        a_name, b_name = left[0].component, right[0].component
        specs = sorted(
            {
                f"{a.component} {a.version} requires {b_name}{a.requires[b_name]}"
                for a in left
                if b_name in a.requires
            }
            | {
                f"{b.component} {b.version} requires {a_name}{b.requires[a_name]}"
                for b in right
                if a_name in b.requires
            }
        )
        allowed_a = ", ".join(str(a.version) for a in left[:5])
        allowed_b = ", ".join(str(b.version) for b in right[:5])
        return (
            f"{a_name} (allowed: {allowed_a}) and {b_name} (allowed: {allowed_b}) "
            f"clash: {'; '.join(specs[:6])}"
        )

    def _explain_clash(self, domains: Sequence[Sequence[ComponentVersion]]) -> str:
        """Name the `requires` constraints that no combination can meet."""
        present = [list(d) for d in domains if d]
        clash = self._arc_consistent(present)
        if clash is None:
            clash = "every pair of components has a compatible choice, but no whole manifest does"
        return "no compatible combination: " + clash

    def _reason(
        self,
        channel: Channel,
        component: str,
        floor: ComponentVersion | None,
        chosen: ComponentVersion | None,
        pins: Sequence[Pin],
        pin_ids: tuple[int, ...],
        manifest: Mapping[str, ComponentVersion],
    ) -> str:
        if chosen is None:
            return f"not installed; no version of {component} is eligible on {channel.name}"
        blockers: dict[str, str] = {}
        for cv in self.state.registry.versions(component):
            if cv.version <= chosen.version:
                break
            why = self._blocker(channel, cv, pins, pin_ids)
            if why is None:
                clash = self._clash(cv, manifest)
                if clash is not None:
                    kind, why = clash
                    blockers.setdefault(kind, why)
            elif why.startswith("soak "):
                blockers.setdefault("soak", why)
            else:
                blockers.setdefault(why, why)
        meets = f" that meets {', '.join(blockers.values())}" if blockers else ""
        if floor is None:
            return f"not installed; newest on {channel.name}{meets}"
        if chosen is floor:
            if blockers:
                return f"unchanged: no newer version on {channel.name}{meets}"
            return f"unchanged: already the newest on {channel.name}"
        return f"newest on {channel.name}{meets}"

    def _clash(
        self, cv: ComponentVersion, manifest: Mapping[str, ComponentVersion]
    ) -> tuple[str, str] | None:
        """Why `cv` does not fit the chosen manifest: (the other component, words)."""
        for other in manifest.values():
            if other.component == cv.component:
                continue
            spec = cv.requires.get(other.component)
            if spec is not None and not self._meets(spec, other.version):
                return other.component, (
                    f"compatibility with {other.component} {other.version} "
                    f"({cv.component} {cv.version} requires {other.component}{spec})"
                )
            spec = other.requires.get(cv.component)
            if spec is not None and not self._meets(spec, cv.version):
                return other.component, (
                    f"compatibility with {other.component} {other.version} "
                    f"(it requires {cv.component}{spec})"
                )
        return None

    # -- security enforcement --

    def _enforce(
        self,
        inst: Instance,
        channel: Channel,
        policy: Policy,
        current: Mapping[str, Version | None],
        pins: Sequence[Pin],
        normal: _Resolution,
        flags: list[AdvisoryFlag],
        enforced: list[Advisory],
        warnings: list[str],
    ) -> InstancePlan:
        normal_fixes_all = all(
            (v := normal.manifest.get(a.component)) is not None and not a.affects(v)
            for a in enforced
        )
        if policy is Policy.AUTO_UPDATE and normal_fixes_all:
            target, reasons, overrides = normal.manifest, dict(normal.reasons), []
            for adv in enforced:
                reasons[adv.component] += f"; fixes {adv.id} ({adv.severity})"
        else:
            key: _Key = (
                inst.channel,
                tuple(current.values()),
                tuple(sorted(self.pin_ids[id(p)] for p in pins)),
                tuple(sorted(a.id for a in enforced)),
            )
            fix = self._fixes.get(key)
            if fix is None:
                try:
                    fix = self._security_fix(channel, current, pins, enforced, normal)
                except PlanError as exc:
                    fix = exc
                self._fixes[key] = fix
            if isinstance(fix, PlanError):
                return self._error(inst, channel, policy, current, fix, warnings)
            target, reasons, overrides = fix.manifest, fix.reasons, fix.overrides
        if policy is Policy.MANUAL_APPROVAL:
            warnings.append("approval waived by security policy")
        elif policy is Policy.FROZEN:
            warnings.append("frozen instance: security fix enforced, nothing else moves")
        flags = [
            AdvisoryFlag(
                f.advisory,
                f.deadline,
                f.enforced,
                (v := target.get(f.advisory.component)) is not None
                and f.advisory not in self.affecting(f.advisory.component, v),
                f.risk_acceptance,
            )
            for f in flags
        ]
        return InstancePlan(
            inst.name,
            inst.channel,
            policy,
            Decision.ENFORCE_SECURITY,
            0,
            self._components(current, target, reasons),
            tuple(flags),
            tuple(overrides),
            tuple(warnings),
        )

    def _security_fix(
        self,
        channel: Channel,
        current: Mapping[str, Version | None],
        pins: Sequence[Pin],
        enforced: Sequence[Advisory],
        normal: _Resolution,
    ) -> _SecurityFix:
        """The minimal fix: only affected components move, only as far as the
        smallest fixed version (same release line first); every other
        component keeps its current version."""
        registry = self.state.registry
        by_component: dict[str, list[Advisory]] = {}
        for adv in enforced:
            by_component.setdefault(adv.component, []).append(adv)

        fixed_now: dict[str, ComponentVersion] = {}
        for component, version in current.items():
            if version is not None and component not in by_component:
                fixed_now[component] = registry.get(component, version)

        staying = list(fixed_now.values())
        for i, left in enumerate(staying):
            for right in staying[i + 1 :]:
                if not self._compatible(left, right):
                    ids = ", ".join(a.id for a in enforced)
                    raise SecurityFixError(
                        f"{ids}: security fix impossible: the components that stay are "
                        f"incompatible ({_words(self._clash(left, {right.component: right}))})"
                    )

        moving = [c for c in self.order if c in by_component]
        candidates: list[list[ComponentVersion]] = []
        for component in moving:
            version = current[component]
            assert version is not None
            advs = by_component[component]
            qualifying = [
                cv
                for cv in reversed(registry.versions(component))
                if cv.version >= version
                and not cv.yanked
                and (channel.allow_prereleases or not cv.version.is_prerelease)
                and not any(a.affects(cv.version) for a in advs)
            ]
            line = release_line(version)
            ordered = [cv for cv in qualifying if release_line(cv.version) == line] + [
                cv for cv in qualifying if release_line(cv.version) != line
            ]
            if not ordered:
                ids = ", ".join(a.id for a in advs)
                raise SecurityFixError(
                    f"{ids}: no fixed version of {component} at or above {version} "
                    "(every later version is yanked, affected or a pre-release)"
                )
            candidates.append(ordered)

        chosen = self._fix_search(candidates, list(fixed_now.values()))
        if chosen is None:
            raise SecurityFixError(self._explain_fix_clash(by_component, candidates, fixed_now))

        manifest = dict(current)
        reasons: dict[str, str] = {}
        overrides: list[Override] = []
        for component in self.order:
            if manifest[component] is None:
                continue
            pending = normal.manifest.get(component)
            reasons[component] = "unchanged: only the security fix moves now" + (
                f" ({pending} waits for the next plan)"
                if pending is not None and pending != current[component]
                else ""
            )
        for cv in chosen:
            advs = by_component[cv.component]
            ids = ", ".join(f"{a.id} ({a.severity})" for a in advs)
            version = current[cv.component]
            assert version is not None
            same_line = release_line(cv.version) == release_line(version)
            where = "on the same release line" if same_line else "(no fix on the same release line)"
            manifest[cv.component] = cv.version
            broken = self._fix_overrides(channel, cv, pins, advs[0].id)
            overrides.extend(broken)
            note = f"; overrides {', '.join(o.rule for o in broken)}" if broken else ""
            reasons[cv.component] = f"security fix for {ids}: smallest fixed version {where}{note}"
        return _SecurityFix(manifest, reasons, overrides)

    def _fix_overrides(
        self, channel: Channel, cv: ComponentVersion, pins: Sequence[Pin], advisory: str
    ) -> list[Override]:
        out: list[Override] = []
        if not self._soaked(channel, cv):
            out.append(
                Override(
                    advisory, cv.component, cv.version, f"soak {format_duration(channel.soak)}"
                )
            )
        if len(channel.constraint) and not self._meets(channel.constraint, cv.version):
            out.append(
                Override(
                    advisory, cv.component, cv.version, f"channel constraint {channel.constraint}"
                )
            )
        for pin in pins:
            if pin.component == cv.component and not self._meets(pin.spec, cv.version):
                out.append(Override(advisory, cv.component, cv.version, pin.short(), pin))
        return out

    def _fix_search(
        self, candidates: Sequence[Sequence[ComponentVersion]], fixed: Sequence[ComponentVersion]
    ) -> list[ComponentVersion] | None:
        def extend(level: int, chosen: list[ComponentVersion]) -> list[ComponentVersion] | None:
            if level == len(candidates):
                return chosen
            for cv in candidates[level]:
                if all(self._compatible(cv, other) for other in (*fixed, *chosen)):
                    found = extend(level + 1, [*chosen, cv])
                    if found is not None:
                        return found
            return None

        return extend(0, [])

    def _explain_fix_clash(
        self,
        by_component: Mapping[str, Sequence[Advisory]],
        candidates: Sequence[Sequence[ComponentVersion]],
        fixed: Mapping[str, ComponentVersion],
    ) -> str:
        parts: list[str] = []
        for options in candidates:
            first = options[0]
            ids = ", ".join(a.id for a in by_component[first.component])
            for other in fixed.values():
                if not self._compatible(first, other):
                    spec_a = first.requires.get(other.component)
                    spec_b = other.requires.get(first.component)
                    detail = (
                        f"{first.component} {first.version} requires {other.component}{spec_a}"
                        if spec_a is not None and not self._meets(spec_a, other.version)
                        else f"{other.component} {other.version} requires {first.component}{spec_b}"
                    )
                    parts.append(
                        f"{ids}: fix {first.component} {first.version} clashes with "
                        f"{other.component} {other.version} ({detail})"
                    )
        if not parts:
            parts.append("no combination of fixed versions is compatible")
        return "security fix impossible: " + "; ".join(parts)


def _words(clash: tuple[str, str] | None) -> str:
    return "" if clash is None else clash[1]


def plan_summary(plan: Plan) -> str:
    """One line of counts per decision, for humans.

    >>> plan_summary(plan)
    '12 instances: 3 deploy, 2 needs-approval, 1 skip-frozen, 2 enforce-security, 4 noop'
    """
    counts = plan.counts()
    parts = [f"{n} {d}" for d, n in counts.items() if n]
    return f"{len(plan.instances)} instances: " + ", ".join(parts)
