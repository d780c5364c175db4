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

from fleet.core.advisories import (
    Advisory,
    AdvisoryIndex,
    AdvisoryKey,
    Finding,
    RiskAcceptance,
    Security,
)
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
    """An advisory affecting what the instance runs now, or what the plan would run.

    `running`: it affects the version running now (else only the planned one).
    `would_fix`: the planned manifest is free of it; `fixed_by_plan`: and the
    plan deploys that manifest (now, or once approved): a frozen instance's
    plan would fix it but does not. `no_fix`: it is enforced and no version
    qualifies as its fix (no fix released yet).
    """

    advisory: Advisory
    deadline: datetime | None
    enforced: bool
    fixed_by_plan: bool
    risk_acceptance: RiskAcceptance | None = None
    running: bool = True
    would_fix: bool = False
    no_fix: bool = False
    overdue: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.advisory.id,
            "component": self.advisory.component,
            "severity": str(self.advisory.severity),
            "deadline": None if self.deadline is None else isoformat(self.deadline),
            "overdue": self.overdue,
            "enforced": self.enforced,
            "running": self.running,
            "fixed_by_plan": self.fixed_by_plan,
            "would_fix": self.would_fix,
            "no_fix": self.no_fix,
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
    part: tuple[int, int] = (0, 1),
) -> Plan:
    """Plan every instance selected (all when no selector is given), in file order.

    `memo` carries the work that does not depend on `now` from one compile
    of `state` to the next; without one, the compile makes its own.
    `part=(k, n)` plans the k-th of n runs of the selection, cut in order and
    as equal as can be, so that n processes can share one compile.

    >>> plan = compile_plan(state, datetime(2026, 11, 26, 12, tzinfo=timezone.utc))
    >>> plan.instances[0].decision
    <Decision.ENFORCE_SECURITY: 'enforce-security'>
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
    k, n = part
    if not 0 <= k < n:
        raise InputError(f"Invalid plan part: {k} of {n}")
    if n > 1:
        selected = selected[k * len(selected) // n : (k + 1) * len(selected) // n]
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
        self.advisories = AdvisoryIndex(state.advisories)
        acceptances: dict[str, list[RiskAcceptance]] = {}
        for ra in state.risk_acceptances:
            acceptances.setdefault(ra.instance, []).append(ra)
        self.acceptances = {k: tuple(v) for k, v in acceptances.items()}
        self.related = _related_pairs(state)
        self.known = frozenset(state.components)
        self.groups = _groups(state.components, self.related)
        self._positions: dict[str, list[int]] | None = None
        self._contains: dict[tuple[int, Version], bool] = {}
        self._compat: dict[tuple[int, int], bool] = {}
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
        """`eligible` cut to the pins and at the floor, newest first (no soak, no floor).

        The list for the pins is made once; each floor takes a prefix of it."""
        key: _Key = (channel.name, component, pin_ids)
        full = self._domains.get(key)
        if full is None:
            full = self._domains[key] = tuple(
                cv
                for cv in self.eligible(channel, component)
                if all(self.meets(p.spec, cv.version) for p in pins)
            )
        if floor is None:
            return full
        return full[: _count_at_or_above(full, floor.version)]

    def expired_note(self, pin: Pin) -> str:
        note = self._notes.get(id(pin))
        if note is None:
            assert pin.expires_at is not None
            note = f"expired pin ignored: {pin.describe()} expired {isoformat(pin.expires_at)}"
            self._notes[id(pin)] = note
        return note


def _count_at_or_above(newest_first: Sequence[ComponentVersion], floor: Version) -> int:
    """How many of `newest_first` are at or above `floor` (a binary search)."""
    lo, hi = 0, len(newest_first)
    while lo < hi:
        mid = (lo + hi) // 2
        if newest_first[mid].version >= floor:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _groups(
    order: Sequence[str], related: Collection[tuple[str, str]]
) -> tuple[tuple[str, ...], ...]:
    """The components linked by `requires` (directly or not), each group in declared
    order: groups never constrain each other, so each is resolved on its own.

    >>> _groups(["api", "web", "db"], {("web", "api"), ("api", "web")})
    (('api', 'web'), ('db',))
    """
    parent = {c: c for c in order}

    def root(c: str) -> str:
        while parent[c] != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c

    for a, b in related:
        if a in parent and b in parent:
            ra, rb = root(a), root(b)
            if ra != rb:
                parent[rb] = ra
    members: dict[str, list[str]] = {}
    for c in order:
        members.setdefault(root(c), []).append(c)
    return tuple(tuple(m) for m in members.values())


def _related_pairs(state: FleetState) -> frozenset[tuple[str, str]]:
    """Pairs of components linked by at least one `requires`, both ways."""
    pairs: set[tuple[str, str]] = set()
    for cv in state.registry:
        for other in cv.requires:
            pairs.add((cv.component, other))
            pairs.add((other, cv.component))
    return frozenset(pairs)


# --- resolution --------------------------------------------------------------

# A component's choice in a manifest: a registry version, or None for "not installed".
_Choice = ComponentVersion | None
# The decisions whose manifest is deployed (now, or once approved).
_DEPLOYING = frozenset({Decision.DEPLOY, Decision.ENFORCE_SECURITY, Decision.NEEDS_APPROVAL})


@dataclass(slots=True)
class _Resolution:
    """The result of resolving one (channel, current, pins, accepted) combination."""

    manifest: dict[str, Version | None]
    reasons: dict[str, str]
    warnings: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _SecurityFix:
    manifest: dict[str, Version | None]
    reasons: dict[str, str]
    overrides: list[Override]


@dataclass(frozen=True, slots=True)
class _FixOptions:
    """The versions that qualify as a component's enforced fix, in the order tried.

    `clean`: no open advisory of medium or above affects them; `carrying`:
    only no *enforced* advisory does (used when no clean one fits).
    """

    clean: tuple[ComponentVersion, ...]
    carrying: tuple[ComponentVersion, ...]

    @property
    def ordered(self) -> tuple[ComponentVersion, ...]:
        return self.clean + self.carrying


_Key = tuple[Any, ...]


class _Planner:
    """Plans instances one by one at `now`, sharing every cache across the fleet.

    Instances that share a channel, a current manifest, the same pins and
    the same risk acceptances get the same resolution, so a fleet of
    thousands resolves only its distinct combinations. What does not depend
    on `now` is asked of the memo, which may outlive this compile; what
    does (soak, expiry, enforcement, and the domains, resolutions and
    reasons built on them) is kept here.
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
        self.security = Security(
            self.state.advisories,
            self.state.risk_acceptances,
            now=now,
            deadlines=self.deadlines,
            index=memo.advisories,
        )
        self._holes: dict[tuple[frozenset[str], int], tuple[Finding, ...]] = {}
        self._options: dict[_Key, _FixOptions] = {}
        self._resolutions: dict[_Key, _Resolution | PlanError] = {}
        self._fixes: dict[_Key, _SecurityFix | PlanError] = {}
        self._window_notes: dict[str, str] = {}
        self._domains: dict[_Key, list[_Choice]] = {}
        self._found: dict[_Key, list[Finding]] = {}
        self._group_resolutions: dict[_Key, _Resolution | PlanError] = {}
        self._narrowed: dict[_Key, Sequence[_Choice]] = {}
        self._scopes: dict[tuple[str, str | None], tuple[tuple[Pin, ...], list[str]]] = {}
        self._wide: dict[_Key, list[ComponentVersion]] = {}
        self._reasons: dict[_Key, str] = {}
        self._flag_sets: dict[_Key, tuple[AdvisoryFlag, ...]] = {}
        self._yanked: dict[_Key, list[str]] = {}

    # -- small cached predicates --

    def _soaked(self, channel: Channel, cv: ComponentVersion) -> bool:
        return cv.released_at + channel.soak <= self.now

    def _hole(
        self, instance: str, accepted: frozenset[str], cv: ComponentVersion
    ) -> tuple[Finding, ...]:
        """The open advisories that make `cv` a known hole on `instance`.

        They depend on the instance only through its risk acceptances, so
        instances that accept nothing share one answer.
        """
        key = (accepted, id(cv))
        hit = self._holes.get(key)
        if hit is None:
            hit = self._holes[key] = self.security.holes(instance, cv.component, cv.version)
        return hit

    def _blocker(
        self,
        channel: Channel,
        cv: ComponentVersion,
        pins: Sequence[Pin],
        pin_ids: tuple[int, ...],
        instance: str,
        accepted: frozenset[str],
    ) -> tuple[str, str] | None:
        """The first rule that makes `cv` ineligible, as (kind, words); None when eligible.

        Kinds: `rule` (constraint, pins, pre-releases, yanks), `hole` (an open
        advisory affects it), `soak` (last: the only rule that passes with time).
        """
        words = self.memo.rule(channel, cv, pins, pin_ids)
        if words is not None:
            return "rule", words
        holes = self._hole(instance, accepted, cv)
        if holes:
            return "hole", _hole_words(cv, holes)
        if not self._soaked(channel, cv):
            ready = isoformat(cv.released_at + channel.soak)
            return "soak", (
                f"soak {format_duration(channel.soak)} "
                f"({cv.component} {cv.version} is eligible from {ready})"
            )
        return None

    # -- per instance --

    def plan(self, inst: Instance) -> InstancePlan:
        channel = self.state.channels[inst.channel]
        policy = effective_policy(channel, inst.policy_override)
        active: list[Pin] = []
        warnings: list[str] = []
        for scope in (("global", None), ("channel", inst.channel), ("instance", inst.name)):
            live, notes = self._scope_pins(scope)
            active.extend(live)
            warnings.extend(notes)
        if inst.name in self.memo.acceptances:
            warnings.extend(self._expired_acceptances(inst.name))
        current = {c: inst.current.get(c) for c in self.order}
        warnings.extend(self._yanked_notes(current))
        accepted = self.security.accepted_ids(inst.name)
        pin_key = tuple(sorted(self.pin_ids[id(p)] for p in active))
        key: _Key = (inst.channel, tuple(current.values()), pin_key, accepted)

        resolution = self._resolutions.get(key)
        if resolution is None:
            try:
                resolution = self._resolve(channel, current, active, inst.name, accepted)
            except PlanError as exc:
                resolution = exc
            self._resolutions[key] = resolution
        if isinstance(resolution, PlanError):
            return self._error(inst, channel, policy, current, resolution, warnings)
        warnings.extend(resolution.warnings)

        enforced = [f for f in self._findings(inst.name, current) if f.enforced]
        fixable: dict[str, list[Finding]] = {}
        no_fix: set[AdvisoryKey] = set()
        for finding in enforced:
            component = finding.advisory.component
            version = current[component]
            assert version is not None
            if self._fix_options(channel, component, version, inst.name, accepted).ordered:
                fixable.setdefault(component, []).append(finding)
            else:
                no_fix.add(finding.advisory.key)
                warnings.append(
                    f"no fix available: {finding.advisory.label()} affects "
                    f"{component} {version} and no version qualifies as its fix; "
                    f"{component} stays at {version}"
                )
        if fixable:
            return self._enforce(
                inst,
                channel,
                policy,
                current,
                active,
                accepted,
                resolution,
                fixable,
                no_fix,
                warnings,
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
            self._flags(inst.name, current, resolution.manifest, decision, no_fix),
            (),
            tuple(warnings),
        )

    def _scope_pins(self, scope: tuple[str, str | None]) -> tuple[tuple[Pin, ...], list[str]]:
        """A scope's active pins, and the notes of its expired ones, at `now`."""
        hit = self._scopes.get(scope)
        if hit is None:
            pins = self.pins_by_scope.get(scope, ())
            hit = self._scopes[scope] = (
                tuple(p for p in pins if p.is_active(self.now)),
                [self.memo.expired_note(p) for p in pins if not p.is_active(self.now)],
            )
        return hit

    def _expired_acceptances(self, instance: str) -> list[str]:
        """Expired risk acceptances of `instance` that no active one replaces."""
        out = []
        for ra in self.memo.acceptances.get(instance, ()):
            if (
                not ra.is_active(self.now)
                and self.security.acceptance(instance, ra.advisory) is None
            ):
                out.append(
                    f"expired risk acceptance ignored: {ra.advisory} accepted by {ra.by} "
                    f"until {isoformat(ra.until)}; it is enforced again"
                )
        return out

    def _yanked_notes(self, current: Mapping[str, Version | None]) -> list[str]:
        key = tuple(current.values())
        hit = self._yanked.get(key)
        if hit is None:
            hit = []
            for component, version in current.items():
                cv = None if version is None else self.state.registry.find(component, version)
                if cv is not None and cv.yanked:
                    why = f": {cv.yanked_reason}" if cv.yanked_reason else ""
                    hit.append(f"{component} {version} (running) is yanked{why}")
            self._yanked[key] = hit
        return hit

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
        return InstancePlan(
            inst.name,
            inst.channel,
            policy,
            Decision.ERROR,
            0,
            components,
            self._flags(inst.name, current, current, Decision.ERROR, set()),
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

    def _findings(self, instance: str, manifest: Mapping[str, Version | None]) -> list[Finding]:
        # Without risk acceptances a finding does not depend on the instance, so
        # the instances that run one manifest share one answer.
        who = instance if self.security.accepted_ids(instance) else None
        key = (who, tuple(manifest.get(c) for c in self.order))
        hit = self._found.get(key)
        if hit is None:
            hit = []
            for component, version in manifest.items():
                if version is not None:
                    hit.extend(self.security.findings(instance, component, version))
            self._found[key] = hit
        return hit

    def _flags(
        self,
        instance: str,
        current: Mapping[str, Version | None],
        target: Mapping[str, Version | None],
        decision: Decision,
        no_fix: Collection[AdvisoryKey],
    ) -> tuple[AdvisoryFlag, ...]:
        """A flag per advisory affecting what runs now, then per advisory that only
        the planned manifest carries (a low one, an accepted one, or what a fix
        that had no clean version still carries)."""
        who = instance if self.security.accepted_ids(instance) else None
        key: _Key = (
            who,
            tuple(current.get(c) for c in self.order),
            tuple(target.get(c) for c in self.order),
            decision,
            frozenset(no_fix),
        )
        hit = self._flag_sets.get(key)
        if hit is None:
            hit = self._flag_sets[key] = self._make_flags(
                instance, current, target, decision, no_fix
            )
        return hit

    def _make_flags(
        self,
        instance: str,
        current: Mapping[str, Version | None],
        target: Mapping[str, Version | None],
        decision: Decision,
        no_fix: Collection[AdvisoryKey],
    ) -> tuple[AdvisoryFlag, ...]:
        deploys = decision in _DEPLOYING
        flags: list[AdvisoryFlag] = []
        running: set[AdvisoryKey] = set()
        for finding in self._findings(instance, current):
            adv = finding.advisory
            running.add(adv.key)
            new = target.get(adv.component)
            fixed = new is not None and adv not in self.security.affecting(adv.component, new)
            flags.append(
                AdvisoryFlag(
                    adv,
                    finding.deadline,
                    finding.enforced,
                    fixed and deploys,
                    finding.acceptance,
                    running=True,
                    would_fix=fixed,
                    no_fix=adv.key in no_fix,
                    overdue=finding.overdue,
                )
            )
        for component, version in target.items():
            if version is None or version == current.get(component):
                continue
            for finding in self.security.findings(instance, component, version):
                if finding.advisory.key in running:
                    continue
                flags.append(
                    AdvisoryFlag(
                        finding.advisory,
                        finding.deadline,
                        finding.enforced,
                        False,
                        finding.acceptance,
                        running=False,
                        overdue=finding.overdue,
                    )
                )
        return tuple(flags)

    # -- normal resolution --

    def _resolve(
        self,
        channel: Channel,
        current: Mapping[str, Version | None],
        pins: Sequence[Pin],
        instance: str,
        accepted: frozenset[str],
    ) -> _Resolution:
        """The normal plan: each group of related components resolved on its own,
        and each group's answer shared by every instance with the same floors,
        pins and risk acceptances for it (a fleet where no two instances share a
        whole manifest still shares most groups)."""
        find = self.state.registry.find
        floors: dict[str, ComponentVersion | None] = {}
        for component, version in current.items():
            floor = None
            if version is not None:
                floor = find(component, version)
                if floor is None:
                    raise UnknownVersionError(
                        f"{component} {version} is not in the version registry"
                    )
            floors[component] = floor
        pins_by_component: dict[str, list[Pin]] = {}
        for pin in pins:
            pins_by_component.setdefault(pin.component, []).append(pin)
        pin_ids: dict[str, tuple[int, ...]] = dict.fromkeys(self.order, ())
        for component, comp_pins in pins_by_component.items():
            ids = pin_ids[component] = tuple(self.pin_ids[id(p)] for p in comp_pins)
            if len(comp_pins) > 1:
                clash = self.memo.pin_clash(component, comp_pins, ids)
                if clash:
                    names = "; ".join(p.describe() for p in clash)
                    raise PinConflictError(f"pin conflict on {component}: {names}")

        manifest: dict[str, Version | None] = {}
        reasons: dict[str, str] = {}
        warnings: list[str] = []
        for group in self.memo.groups:
            key: _Key = (
                channel.name,
                accepted,
                group,
                tuple([id(floors[c]) for c in group]),
                tuple([pin_ids[c] for c in group]) if pins else (),
            )
            part = self._group_resolutions.get(key)
            if part is None:
                try:
                    part = self._resolve_group(
                        group, channel, floors, pins_by_component, pin_ids, instance, accepted
                    )
                except PlanError as exc:
                    part = exc
                self._group_resolutions[key] = part
            if isinstance(part, PlanError):
                raise part
            manifest.update(part.manifest)
            reasons.update(part.reasons)
            warnings.extend(part.warnings)
        return _Resolution({c: manifest[c] for c in self.order}, reasons, warnings)

    def _resolve_group(
        self,
        group: Sequence[str],
        channel: Channel,
        floors: Mapping[str, ComponentVersion | None],
        pins_by_component: Mapping[str, Sequence[Pin]],
        pin_ids: Mapping[str, tuple[int, ...]],
        instance: str,
        accepted: frozenset[str],
    ) -> _Resolution:
        domains = [
            (
                c,
                self._domain(
                    channel,
                    c,
                    floors[c],
                    pins_by_component.get(c, ()),
                    pin_ids[c],
                    instance,
                    accepted,
                ),
            )
            for c in group
        ]
        chosen = self._search(domains)
        if chosen is None:
            raise IncompatibleError(self._explain_clash(domains))
        warnings: list[str] = []
        for component in group:
            floor = floors[component]
            if floor is None or chosen.get(component) is not floor:
                continue
            for pin in pins_by_component.get(component, ()):
                if not self._meets(pin.spec, floor.version):
                    warnings.append(
                        f"{component} {floor.version} breaks {pin.describe()}; "
                        "kept (compile never lowers a version)"
                    )
        present = {c: cv for c, cv in chosen.items() if cv is not None}
        manifest = {c: None if cv is None else cv.version for c, cv in chosen.items()}
        reasons = {}
        for c in group:
            # The reason depends on the chosen versions of related components only.
            key: _Key = (
                channel.name,
                c,
                id(floors[c]),
                id(chosen[c]),
                pin_ids[c],
                accepted,
                tuple((o, id(cv)) for o, cv in chosen.items() if (c, o) in self._related),
            )
            text = self._reasons.get(key)
            if text is None:
                text = self._reasons[key] = self._reason(
                    channel,
                    c,
                    floors[c],
                    chosen[c],
                    pins_by_component.get(c, ()),
                    pin_ids[c],
                    present,
                    instance,
                    accepted,
                )
            reasons[c] = text
        return _Resolution(manifest, reasons, warnings)

    def _domain(
        self,
        channel: Channel,
        component: str,
        floor: ComponentVersion | None,
        pins: Sequence[Pin],
        pin_ids: tuple[int, ...],
        instance: str,
        accepted: frozenset[str],
    ) -> list[_Choice]:
        """The choices for one component, best first: eligible versions at or above
        the floor that meet the pins and are no known hole, newest first; then the
        floor itself (compile keeps it when nothing is better); for a component
        that is not installed, None ("stays uninstalled") last.

        The memo's domain has every rule but the soak and the holes; those
        are applied here."""
        key: _Key = (channel.name, component, id(floor), pin_ids, accepted)
        hit = self._domains.get(key)
        if hit is None:
            wide_key: _Key = (channel.name, component, pin_ids, accepted)
            wide = self._wide.get(wide_key)
            if wide is None:
                static = self.memo.domain(channel, component, None, pins, pin_ids)
                wide = self._wide[wide_key] = [
                    cv
                    for cv in static
                    if self._soaked(channel, cv)
                    and not self._hole(instance, accepted, cv)
                    and self._standalone(cv)
                ]
            kept = wide if floor is None else wide[: _count_at_or_above(wide, floor.version)]
            hit = list[_Choice](kept)
            if floor is not None and (not hit or hit[-1] is not floor) and self._standalone(floor):
                hit.append(floor)
            if floor is None:
                hit.append(None)
            self._domains[key] = hit
        return hit

    def _fits(self, a_name: str, a: _Choice, b_name: str, b: _Choice) -> bool:
        """Whether two choices can stand in one manifest: every `requires` between
        them holds, and a requirement on a component left out is not met."""
        if a is None:
            return b is None or a_name not in b.requires
        if b is None:
            return b_name not in a.requires
        return self._compatible(a, b)

    def _standalone(self, cv: _Choice) -> bool:
        """A version that requires a component the product does not have never fits."""
        return cv is None or all(other in self.memo.known for other in cv.requires)

    def _search(
        self, domains: Sequence[tuple[str, Sequence[_Choice]]]
    ) -> dict[str, _Choice] | None:
        """The lexicographically greatest compatible manifest, or None.

        Depth-first in declared order, best choice first, so the first complete
        assignment found is the answer. Three things keep it small without
        changing that answer: forward checking (an assignment that leaves a
        later component nothing is skipped) and memoised failures (a subtree
        that failed fails again whenever the earlier components it depends
        on are the same), so two clashing components late in the order cost
        a few steps per choice of the earlier ones, not their product.
        When the search fails, arc consistency names the clash.
        """
        names = [name for name, _ in domains]
        present = [options for _, options in domains]  # never changed: shared lists
        if any(not options for options in present):
            return None
        related = self._related
        narrowed = self._narrowed
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

        def extend(level: int, chosen: list[_Choice], rest: list[Sequence[_Choice]]) -> bool:
            if level == len(names):
                return True
            key = (level, tuple(id(chosen[j]) for j in depends[level]))
            if key in failed:
                return False
            name = names[level]
            for cv in rest[0]:
                pruned: list[Sequence[_Choice]] = []
                for offset, future in enumerate(rest[1:], start=level + 1):
                    other = names[offset]
                    if (name, other) in related:
                        # What is left of a later domain once `cv` is chosen: the same
                        # for every search that meets the same list (the domains and
                        # these narrowed lists live as long as this planner).
                        narrow_key = (name, id(cv), id(future))
                        narrower = narrowed.get(narrow_key)
                        if narrower is None:
                            narrower = [w for w in future if self._fits(name, cv, other, w)]
                            narrowed[narrow_key] = narrower
                        future = narrower
                        if not future:
                            break
                    pruned.append(future)
                else:
                    chosen.append(cv)
                    if extend(level + 1, chosen, pruned):
                        return True
                    chosen.pop()
            failed.add(key)
            return False

        chosen: list[_Choice] = []
        if not extend(0, chosen, present):
            return None
        return dict(zip(names, chosen, strict=True))

    def _arc_consistent(self, names: list[str], domains: list[list[_Choice]]) -> str | None:
        """Prune `domains` in place (AC-3); on a wipe-out, the clash in words."""
        related = self._related
        queue = [
            (a, b)
            for a in range(len(domains))
            for b in range(len(domains))
            if a != b and (names[a], names[b]) in related
        ]
        pending = set(queue)
        while queue:
            a, b = queue.pop(0)
            pending.discard((a, b))
            before = domains[a]
            kept = [
                x for x in before if any(self._fits(names[a], x, names[b], y) for y in domains[b])
            ]
            if len(kept) == len(before):
                continue
            if not kept:
                return self._pair_clash(names[a], before, names[b], domains[b])
            domains[a] = kept
            for i in range(len(domains)):
                if i not in (a, b) and (names[i], names[a]) in related and (i, a) not in pending:
                    queue.append((i, a))
                    pending.add((i, a))
        return None

    def _pair_clash(
        self,
        a_name: str,
        left: Sequence[_Choice],
        b_name: str,
        right: Sequence[_Choice],
    ) -> str:
        def needs(side: Sequence[_Choice], other: str) -> set[str]:
            return {
                f"{cv.component} {cv.version} requires {other}{cv.requires[other]}"
                for cv in side
                if cv is not None and other in cv.requires
            }

        specs = sorted(needs(left, b_name) | needs(right, a_name))
        return (
            f"{a_name} (allowed: {_allowed(left)}) and {b_name} (allowed: {_allowed(right)}) "
            f"clash: {'; '.join(specs[:6])}"
        )

    def _explain_clash(self, domains: Sequence[tuple[str, Sequence[_Choice]]]) -> str:
        """Name the `requires` constraints that no combination can meet."""
        names = [name for name, _ in domains]
        present = [list(options) for _, options in domains]
        for name, options in zip(names, present, strict=True):
            if not options:
                unknown = sorted(
                    {
                        f"{cv.component} {cv.version} requires {other}, which is not a component"
                        for cv in self.state.registry.versions(name)
                        for other in cv.requires
                        if other not in self.memo.known
                    }
                )
                return f"no compatible combination: {name}: {'; '.join(unknown[:6])}"
        clash = self._arc_consistent(names, present)
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
        instance: str,
        accepted: frozenset[str],
    ) -> str:
        meets: dict[str, str] = {}
        skipped: list[str] = []
        for cv in self.state.registry.versions(component):
            if chosen is not None and cv.version <= chosen.version:
                break
            if floor is not None and cv.version < floor.version:
                break
            blocker = self._blocker(channel, cv, pins, pin_ids, instance, accepted)
            if blocker is None:
                clash = self._clash(cv, manifest)
                if clash is not None:
                    kind, why = clash
                    meets.setdefault(kind, why)
            elif blocker[0] == "soak":
                meets.setdefault("soak", blocker[1])
            elif blocker[0] == "hole":
                skipped.append(blocker[1])
            else:
                meets.setdefault(blocker[1], blocker[1])
        text = f" that meets {', '.join(meets.values())}" if meets else ""
        if len(skipped) > 3:
            skipped = [*skipped[:3], f"{len(skipped) - 3} more known holes skipped"]
        if skipped:
            text += "; " + "; ".join(skipped)
        if floor is None:
            if chosen is None:
                if not self.memo.eligible(channel, component):
                    return f"not installed; no version of {component} is eligible on {channel.name}"
                return f"not installed; no version eligible on {channel.name} fits{text}"
            return f"not installed; newest on {channel.name}{text}"
        if chosen is floor:
            if meets or skipped:
                return f"unchanged: no newer version on {channel.name}{text}"
            return f"unchanged: already the newest on {channel.name}"
        return f"newest on {channel.name}{text}"

    def _clash(
        self, cv: ComponentVersion, manifest: Mapping[str, ComponentVersion], *, whole: bool = True
    ) -> tuple[str, str] | None:
        """Why `cv` does not fit the chosen manifest: (the other component, words).

        With `whole`, `manifest` is every component installed, so a requirement
        on one it does not hold is not met."""
        if whole:
            for name in cv.requires:
                if name not in manifest:
                    return name, (
                        f"compatibility ({cv.component} {cv.version} requires {name}"
                        f"{cv.requires[name]}, which is not installed)"
                    )
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

    def _fix_options(
        self,
        channel: Channel,
        component: str,
        version: Version,
        instance: str,
        accepted: frozenset[str],
    ) -> _FixOptions:
        """The versions that qualify as an enforced fix of `component` at `version`.

        In the registry, not yanked, at or above `version`, a final release
        unless the channel allows pre-releases; first those no open advisory
        of medium or above affects, then those no enforced advisory affects.
        Each group smallest first, the same release line first. Soak, the
        channel constraint and pins do not hold a fix back.
        """
        key: _Key = (component, version, channel.allow_prereleases, accepted)
        hit = self._options.get(key)
        if hit is None:
            base = [
                cv
                for cv in reversed(self.state.registry.versions(component))
                if cv.version >= version
                and not cv.yanked
                and (channel.allow_prereleases or not cv.version.is_prerelease)
            ]
            clean = [cv for cv in base if not self._hole(instance, accepted, cv)]
            carrying = [
                cv
                for cv in base
                if self._hole(instance, accepted, cv)
                and not any(
                    f.enforced for f in self.security.findings(instance, component, cv.version)
                )
            ]
            line = release_line(version)
            hit = self._options[key] = _FixOptions(
                _same_line_first(clean, line), _same_line_first(carrying, line)
            )
        return hit

    def _enforce(
        self,
        inst: Instance,
        channel: Channel,
        policy: Policy,
        current: Mapping[str, Version | None],
        pins: Sequence[Pin],
        accepted: frozenset[str],
        normal: _Resolution,
        fixable: Mapping[str, Sequence[Finding]],
        no_fix: set[AdvisoryKey],
        warnings: list[str],
    ) -> InstancePlan:
        normal_fixes_all = all(
            (v := normal.manifest.get(component)) is not None
            and not any(f.advisory in self.security.affecting(component, v) for f in findings)
            for component, findings in fixable.items()
        )
        if policy is Policy.AUTO_UPDATE and normal_fixes_all:
            target, reasons, overrides = normal.manifest, dict(normal.reasons), []
            for findings in fixable.values():
                for f in findings:
                    reasons[f.advisory.component] += (
                        f"; fixes {f.advisory.id} ({f.advisory.severity})"
                    )
        else:
            key: _Key = (
                inst.channel,
                tuple(current.values()),
                tuple(sorted(self.pin_ids[id(p)] for p in pins)),
                accepted,
                tuple(sorted(f.advisory.key for fs in fixable.values() for f in fs)),
            )
            fix = self._fixes.get(key)
            if fix is None:
                try:
                    fix = self._security_fix(
                        channel, current, pins, inst.name, accepted, fixable, normal
                    )
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
        decision = Decision.ENFORCE_SECURITY
        return InstancePlan(
            inst.name,
            inst.channel,
            policy,
            decision,
            0,
            self._components(current, target, reasons),
            self._flags(inst.name, current, target, decision, no_fix),
            tuple(overrides),
            tuple(warnings),
        )

    def _security_fix(
        self,
        channel: Channel,
        current: Mapping[str, Version | None],
        pins: Sequence[Pin],
        instance: str,
        accepted: frozenset[str],
        fixable: Mapping[str, Sequence[Finding]],
        normal: _Resolution,
    ) -> _SecurityFix:
        """The minimal fix: only affected components move, only as far as the
        smallest qualifying version (same release line first); every other
        component keeps its current version."""
        registry = self.state.registry
        staying: dict[str, ComponentVersion] = {}
        for component, version in current.items():
            if version is not None and component not in fixable:
                staying[component] = registry.get(component, version)
        ids = ", ".join(f.advisory.id for fs in fixable.values() for f in fs)
        clash = self._staying_clash(staying, fixable)
        if clash is not None:
            raise SecurityFixError(
                f"{ids}: security fix impossible: the components that stay are "
                f"incompatible ({clash})"
            )

        moving = [c for c in self.order if c in fixable]
        options: dict[str, _FixOptions] = {}
        for component in moving:
            version = current[component]
            assert version is not None
            options[component] = self._fix_options(channel, component, version, instance, accepted)
        chosen = self._fix_search(moving, options, staying)
        if chosen is None:
            raise SecurityFixError(self._explain_fix_clash(fixable, options, staying))

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
            findings = fixable[cv.component]
            labels = ", ".join(f"{f.advisory.id} ({f.advisory.severity})" for f in findings)
            version = current[cv.component]
            assert version is not None
            same_line = release_line(cv.version) == release_line(version)
            where = "on the same release line" if same_line else "(no fix on the same release line)"
            manifest[cv.component] = cv.version
            broken = self._fix_overrides(channel, cv, pins, findings[0].advisory.id)
            overrides.extend(broken)
            note = f"; overrides {', '.join(o.rule for o in broken)}" if broken else ""
            carried = self._hole(instance, accepted, cv)
            if carried:
                still = ", ".join(f"{f.advisory.id} ({f.advisory.severity})" for f in carried)
                note += f"; still affected by {still}: no version free of open advisories fits"
            reasons[cv.component] = (
                f"security fix for {labels}: smallest fixed version {where}{note}"
            )
        return _SecurityFix(manifest, reasons, overrides)

    def _staying_clash(
        self, staying: Mapping[str, ComponentVersion], moving: Collection[str]
    ) -> str | None:
        """Why the components a minimal fix keeps cannot stand together, or None."""
        names = list(staying)
        for i, name in enumerate(names):
            cv = staying[name]
            for other in cv.requires:
                if other not in staying and other not in moving:
                    return (
                        f"{cv.component} {cv.version} requires {other}{cv.requires[other]}, "
                        "which is not installed"
                    )
            for right in names[i + 1 :]:
                if not self._compatible(cv, staying[right]):
                    return _words(self._clash(cv, {right: staying[right]}, whole=False))
        return None

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
        self,
        moving: Sequence[str],
        options: Mapping[str, _FixOptions],
        staying: Mapping[str, ComponentVersion],
    ) -> list[ComponentVersion] | None:
        """The first combination of fixes, in the order of `options`, that fits
        the components that stay (a requirement on one that is not installed
        is not met)."""
        absent = [c for c in self.order if c not in staying and c not in moving]

        def fits(cv: ComponentVersion, chosen: Sequence[ComponentVersion]) -> bool:
            return (
                self._standalone(cv)
                and all(self._compatible(cv, other) for other in (*staying.values(), *chosen))
                and all(name not in cv.requires for name in absent)
            )

        def extend(level: int, chosen: list[ComponentVersion]) -> list[ComponentVersion] | None:
            if level == len(moving):
                return chosen
            for cv in options[moving[level]].ordered:
                if fits(cv, chosen):
                    found = extend(level + 1, [*chosen, cv])
                    if found is not None:
                        return found
            return None

        return extend(0, [])

    def _explain_fix_clash(
        self,
        fixable: Mapping[str, Sequence[Finding]],
        options: Mapping[str, _FixOptions],
        staying: Mapping[str, ComponentVersion],
    ) -> str:
        parts: list[str] = []
        for component, choice in options.items():
            first = choice.ordered[0]
            ids = ", ".join(f.advisory.id for f in fixable[component])
            for other in first.requires:
                if other not in staying and other not in options:
                    parts.append(
                        f"{ids}: fix {first.component} {first.version} requires "
                        f"{other}{first.requires[other]}, which is not installed"
                    )
            for other_cv in staying.values():
                if not self._compatible(first, other_cv):
                    spec_a = first.requires.get(other_cv.component)
                    spec_b = other_cv.requires.get(first.component)
                    detail = (
                        f"{first.component} {first.version} requires {other_cv.component}{spec_a}"
                        if spec_a is not None and not self._meets(spec_a, other_cv.version)
                        else f"{other_cv.component} {other_cv.version} requires "
                        f"{first.component}{spec_b}"
                    )
                    parts.append(
                        f"{ids}: fix {first.component} {first.version} clashes with "
                        f"{other_cv.component} {other_cv.version} ({detail})"
                    )
        if not parts:
            parts.append("no combination of fixed versions is compatible")
        return "security fix impossible: " + "; ".join(parts)


def _same_line_first(
    versions: Sequence[ComponentVersion], line: tuple[int, int]
) -> tuple[ComponentVersion, ...]:
    """Smallest first, those of release line `line` before the others."""
    return tuple(
        [cv for cv in versions if release_line(cv.version) == line]
        + [cv for cv in versions if release_line(cv.version) != line]
    )


def _hole_words(cv: ComponentVersion, holes: Sequence[Finding]) -> str:
    """`2.4.0 skipped: CVE-D (medium) affects it`."""
    names = ", ".join(f"{f.advisory.id} ({f.advisory.severity})" for f in holes)
    verb = "affects" if len(holes) == 1 else "affect"
    return f"{cv.version} skipped: {names} {verb} it"


def _allowed(options: Sequence[_Choice]) -> str:
    return ", ".join("not installed" if cv is None else str(cv.version) for cv in options[:5])


def _words(clash: tuple[str, str] | None) -> str:
    return "" if clash is None else clash[1]


def plan_summary(plan: Plan) -> str:
    """One line of counts per decision, for humans.

    >>> plan_summary(plan)
    '12 instances: 2 noop, 2 deploy, 3 needs-approval, 1 skip-frozen, 4 enforce-security'
    """
    counts = plan.counts()
    parts = [f"{n} {d}" for d, n in counts.items() if n]
    return f"{len(plan.instances)} instances: " + ", ".join(parts)
