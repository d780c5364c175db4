"""compile_plan against the naive reference planner, on generated fleets.

The generator covers what real fleets and real OSV records hold: overlapping
ranges, one advisory id on several components with their own severities,
pre-releases, `last_affected`, `limit`, explicit version lists, pins at three
levels (some expired), risk acceptances (some expired), yanks, soak,
`requires` (some on components an instance does not run) and instances that
run only part of the product.
"""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from packaging.version import Version

from fleet.core.advisories import DEFAULT_DEADLINES, Security, Severity
from fleet.core.channels import Policy
from fleet.core.plan import Decision, compile_plan
from fleet.core.state import FleetState
from tests.core.reference_planner import reference_plan
from tests.factories import LONG_AGO, NOW, acceptance, advisory, channel, cv, instance, pin, state

COMPONENTS = ("api", "web", "worker")
VERSIONS = ["1.0.0", "1.0.1", "1.1.0", "1.2.0rc1", "1.2.0", "2.0.0", "2.0.1", "2.1.0"]
EVENT_VERSIONS = ["0", *VERSIONS, "1.0.5", "1.1.1", "3.0"]
SPECS = ["<2", ">=1.1", "==1.*", "!=2.0.0", ">=2,<2.1", "<1.1", ">=1.0.1", "~=1.0"]
CHANNELS = ("stable", "beta")


def hours(low: int, high: int) -> st.SearchStrategy[timedelta]:
    return st.integers(low, high).map(lambda n: timedelta(hours=n))


@st.composite
def osv_events(draw):
    """One OSV range's events: an introduced, then maybe fixed/last_affected pairs and a limit."""
    events = [{"introduced": draw(st.sampled_from(EVENT_VERSIONS))}]
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2]))):
        closing = draw(st.sampled_from(["fixed", "fixed", "fixed", "last_affected", "introduced"]))
        events.append({closing: draw(st.sampled_from(EVENT_VERSIONS[1:]))})
    if draw(st.booleans()) and draw(st.booleans()):
        events.append({"limit": draw(st.sampled_from(EVENT_VERSIONS[1:]))})
    return events


@st.composite
def fleets(draw) -> FleetState:
    registry = []
    for comp in COMPONENTS:
        chosen = draw(st.lists(st.sampled_from(VERSIONS), min_size=1, max_size=6, unique=True))
        for v in chosen:
            requires = {}
            if draw(st.integers(0, 3)) == 0:
                requires = draw(
                    st.dictionaries(
                        st.sampled_from([c for c in COMPONENTS if c != comp]),
                        st.sampled_from(SPECS),
                        max_size=2,
                    )
                )
            yanked = draw(st.booleans()) and draw(st.booleans())
            released_at = draw(st.sampled_from([LONG_AGO, NOW - timedelta(hours=1)]))
            if draw(st.booleans()):
                released_at = NOW - draw(hours(0, 96))
            registry.append(cv(comp, v, requires=requires, yanked=yanked, released_at=released_at))
    by_comp = {c: [str(x.version) for x in registry if x.component == c] for c in COMPONENTS}
    channels = [
        channel(
            name,
            draw(st.sampled_from(list(Policy))),
            constraint=draw(st.sampled_from(["", "", "<2", ">=1.1", "~=1.0"])),
            allow_prereleases=draw(st.booleans()),
            soak=draw(st.sampled_from([timedelta(0), timedelta(hours=24), timedelta(hours=72)])),
        )
        for name in CHANNELS
    ]
    instances = []
    for n in range(draw(st.integers(1, 3))):
        current = {}
        for c in COMPONENTS:
            if draw(st.integers(0, 4)) == 0:
                continue  # not installed
            pool = by_comp[c] + (["9.9.9"] if draw(st.integers(0, 20)) == 0 else [])
            current[c] = draw(st.sampled_from(pool))
        instances.append(
            instance(
                f"i{n}",
                channel=draw(st.sampled_from(CHANNELS)),
                current=current,
                policy_override=draw(st.sampled_from([None, None, *Policy])),
            )
        )
    scopes = [
        "global",
        *(f"channel:{c}" for c in CHANNELS),
        *(f"instance:{i.name}" for i in instances),
    ]
    pins = [
        pin(
            draw(st.sampled_from(scopes)),
            draw(st.sampled_from(COMPONENTS)),
            draw(st.sampled_from(SPECS)),
            expires_at=NOW + draw(hours(-48, 48)) if draw(st.booleans()) else None,
        )
        for _ in range(draw(st.integers(0, 3)))
    ]
    advisories = []
    seen = set()
    for _ in range(draw(st.integers(0, 6))):
        ident = draw(st.sampled_from(["CVE-A", "CVE-B", "CVE-C"]))
        comp = draw(st.sampled_from(COMPONENTS))
        if (ident, comp) in seen:
            continue
        seen.add((ident, comp))
        ranges = draw(st.lists(osv_events(), min_size=0, max_size=2))
        listed = draw(st.lists(st.sampled_from(VERSIONS), max_size=4))
        if not ranges and not listed:
            listed = [draw(st.sampled_from(VERSIONS))]
        adv = advisory(
            ident,
            comp,
            severity=draw(st.sampled_from([*Severity, Severity.CRITICAL])),
            published_at=NOW - timedelta(days=draw(st.sampled_from([0, 1, 3, 10, 40]))),
            events=ranges[0] if ranges else (),
            versions=listed,
        )
        if len(ranges) > 1:
            from dataclasses import replace

            from fleet.core.advisories import AffectedRange

            extra = AffectedRange.parse({"type": "ECOSYSTEM", "events": ranges[1]})
            adv = replace(adv, ranges=(*adv.ranges, extra))
        advisories.append(adv)
    acceptances = [
        acceptance(
            draw(st.sampled_from([i.name for i in instances])),
            draw(st.sampled_from(["CVE-A", "CVE-B", "CVE-C"])),
            until=NOW + draw(hours(-24, 24)),
        )
        for _ in range(draw(st.integers(0, 2)))
    ]
    fleet = state(
        components=COMPONENTS,
        registry=registry,
        channels=channels,
        instances=instances,
        pins=pins,
        advisories=advisories,
        risk_acceptances=acceptances,
    )
    if draw(st.booleans()):
        deadlines = dict(DEFAULT_DEADLINES)
        deadlines[Severity.LOW] = timedelta(days=draw(st.integers(1, 40)))
        from dataclasses import replace

        fleet = replace(fleet, deadlines=deadlines)
    return fleet


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleets())
def test_compile_agrees_with_the_reference_planner(fleet: FleetState) -> None:
    plan = compile_plan(fleet, NOW)
    for inst, item in zip(fleet.instances, plan.instances, strict=True):
        expected = reference_plan(fleet, inst, NOW)
        assert str(item.decision) == expected.decision, (inst.name, item.to_json())
        if expected.decision == "error":
            continue
        got = {c.component: c.to_version for c in item.components}
        want = {c: v for c, v in expected.manifest.items() if v is not None}
        assert {c: v for c, v in got.items() if v is not None} == want, (inst.name, item.to_json())
        flagged = frozenset(f.advisory.key for f in item.advisories if f.no_fix)
        assert flagged == expected.no_fix, (inst.name, item.to_json())


@st.composite
def security_fleets(draw) -> FleetState:
    """Fleets where advisories crowd one component: arbitrary affected sets (OSV
    explicit versions) of every severity and age, so that fixes land between
    holes, carry lesser ones, or do not exist."""
    api = draw(st.lists(st.sampled_from(VERSIONS), min_size=2, max_size=8, unique=True))
    registry = [
        cv("api", v, yanked=draw(st.integers(0, 5)) == 0, released_at=LONG_AGO) for v in api
    ]
    registry += [cv("web", "1.0.0"), cv("web", "2.0.0", requires={"api": ">=2"})]
    chan = channel(
        "stable",
        draw(st.sampled_from(list(Policy))),
        allow_prereleases=draw(st.booleans()),
        constraint=draw(st.sampled_from(["", "<2"])),
    )
    current_api = draw(st.sampled_from(sorted(api, key=Version)[:3]))
    inst = instance("i0", current={"api": current_api, "web": "1.0.0"})
    advisories = []
    for n in range(draw(st.integers(1, 5))):
        advisories.append(
            advisory(
                f"CVE-{n}",
                "api",
                severity=draw(st.sampled_from(list(Severity))),
                published_at=NOW - timedelta(days=draw(st.sampled_from([0, 2, 10, 40]))),
                versions=draw(st.lists(st.sampled_from(api), min_size=1, max_size=5)),
            )
        )
    acceptances = []
    if draw(st.booleans()):
        acceptances.append(
            acceptance(
                "i0",
                draw(st.sampled_from([a.id for a in advisories])),
                until=NOW + timedelta(days=1),
            )
        )
    pins = [pin("global", "api", draw(st.sampled_from(SPECS)))] if draw(st.booleans()) else []
    return state(
        components=("api", "web"),
        registry=registry,
        channels=[chan],
        instances=[inst],
        pins=pins,
        advisories=advisories,
        risk_acceptances=acceptances,
    )


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(security_fleets())
def test_security_fixes_agree_with_the_reference_planner(fleet: FleetState) -> None:
    test_compile_agrees_with_the_reference_planner.hypothesis.inner_test(fleet)  # type: ignore[attr-defined]


# Invariants that must hold for any input, on both generators.

ANY_FLEET = st.one_of(fleets(), security_fleets())


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ANY_FLEET)
def test_no_chosen_version_carries_an_enforced_advisory_unless_no_fix_is_said(
    fleet: FleetState,
) -> None:
    plan = compile_plan(fleet, NOW)
    security = Security(
        fleet.advisories, fleet.risk_acceptances, now=NOW, deadlines=fleet.deadlines
    )
    for item in plan.instances:
        if item.decision is Decision.ERROR:
            continue
        no_fix = {f.advisory.key for f in item.advisories if f.no_fix}
        for c in item.components:
            if c.to_version is None:
                continue
            for finding in security.findings(item.instance, c.component, c.to_version):
                if finding.enforced:
                    assert finding.advisory.key in no_fix, (item.instance, item.to_json())
                    assert c.to_version == c.from_version  # it stays where it is


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ANY_FLEET)
def test_every_requires_holds_and_nothing_goes_down(fleet: FleetState) -> None:
    for item in compile_plan(fleet, NOW).instances:
        if item.decision is Decision.ERROR:
            continue
        target = {c.component: c.to_version for c in item.components if c.to_version}
        for c in item.components:
            if c.from_version is not None:
                assert c.to_version is not None and c.to_version >= c.from_version
        for comp, version in target.items():
            for other, spec in fleet.registry.get(comp, version).requires.items():
                assert other in target, (item.instance, comp, other)
                assert spec.contains(target[other], prereleases=True), (item.instance, comp)
