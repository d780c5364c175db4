"""Invariants of compile and rollback, checked on generated fleets."""

from __future__ import annotations

import json
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from packaging.version import Version

from fleet.core.channels import MaintenanceWindow, Policy
from fleet.core.errors import RollbackError
from fleet.core.manifests import Manifest, ManifestStatus, Revision
from fleet.core.plan import Decision, PlanMemo, compile_plan
from fleet.core.rollback import RollbackTarget, choose_rollback
from tests.factories import LONG_AGO, NOW, acceptance, advisory, channel, cv, instance, pin, state

COMPONENTS = ("api", "web", "worker")
VERSIONS = [f"{major}.{minor}.{patch}" for major in (1, 2) for minor in (0, 1) for patch in (0, 1)]
SPECS = ["<2", ">=1.1", "==1.*", "!=2.0.0", ">=2,<2.1", "<1.1", ">=1.0.1"]


def hours(low: int, high: int) -> st.SearchStrategy[timedelta]:
    return st.integers(low, high).map(lambda n: timedelta(hours=n))


@st.composite
def fleets(draw, *, timed: bool = False):
    """Small fleets; `timed` ones also have recent releases, a soak, a window,
    expiring pins and risk acceptances, so that their plan changes with time."""
    registry = []
    for comp in COMPONENTS:
        for v in draw(st.lists(st.sampled_from(VERSIONS), min_size=1, max_size=6, unique=True)):
            requires = draw(
                st.dictionaries(
                    st.sampled_from([c for c in COMPONENTS if c != comp]),
                    st.sampled_from(SPECS),
                    max_size=1,
                )
            )
            yanked = draw(st.booleans()) and draw(st.booleans())
            released_at = NOW - draw(hours(0, 96)) if timed else LONG_AGO
            registry.append(cv(comp, v, requires=requires, yanked=yanked, released_at=released_at))
    by_comp = {c: [x.version for x in registry if x.component == c] for c in COMPONENTS}
    policy = draw(st.sampled_from(list(Policy)))
    timing = {}
    if timed:
        timing["soak"] = draw(
            st.sampled_from([timedelta(0), timedelta(hours=24), timedelta(hours=72)])
        )
        timing["window"] = draw(
            st.sampled_from([None, MaintenanceWindow("0 2 * * *", timedelta(hours=4), "UTC")])
        )
    instances = [
        instance(
            f"i{n}",
            current={c: str(draw(st.sampled_from(by_comp[c]))) for c in COMPONENTS},
        )
        for n in range(draw(st.integers(1, 4)))
    ]
    scopes = ["global", "channel:stable", *(f"instance:{i.name}" for i in instances)]
    pins = [
        pin(
            draw(st.sampled_from(scopes)),
            draw(st.sampled_from(COMPONENTS)),
            draw(st.sampled_from(SPECS)),
            expires_at=NOW + draw(hours(-24, 24 * 10)) if timed and draw(st.booleans()) else None,
        )
        for _ in range(draw(st.integers(0, 3)))
    ]
    advisories = [
        advisory(
            f"FLEET-2026-{n:04d}",
            draw(st.sampled_from(COMPONENTS)),
            severity=draw(st.sampled_from(["critical", "medium"])),
            published_at=NOW - timedelta(days=draw(st.integers(0, 60))),
            events=[{"introduced": "0"}, {"fixed": draw(st.sampled_from(VERSIONS))}],
        )
        for n in range(draw(st.integers(0, 2)))
    ]
    acceptances = [
        acceptance(
            draw(st.sampled_from(instances)).name,
            draw(st.sampled_from(advisories)).id,
            until=NOW + draw(hours(-24, 24 * 40)),
        )
        for _ in range(draw(st.integers(0, 2)) if timed and advisories else 0)
    ]
    return state(
        components=COMPONENTS,
        registry=registry,
        channels=[channel(policy=policy, **timing)],
        instances=instances,
        pins=pins,
        advisories=advisories,
        risk_acceptances=acceptances,
    )


PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(fleets())
def test_manifest_meets_every_active_pin_and_requires_unless_overridden(fleet):
    for p in compile_plan(fleet, NOW).instances:
        if p.decision is Decision.ERROR:
            continue
        target = {c.component: c.to_version for c in p.components}
        for c in p.changes:
            for active in fleet.pins:
                if active.component != c.component or not active.scope.applies_to(
                    instance=p.instance, channel=p.channel
                ):
                    continue
                overridden = any(o.pin is active for o in p.pin_overrides)
                assert overridden or active.spec.contains(c.to_version, prereleases=True)
        for comp, version in target.items():
            requires = fleet.registry.get(comp, version).requires
            for other, spec in requires.items():
                # A requirement on a component that is not installed is not met.
                assert target.get(other) is not None, (p.instance, comp, other)
                assert spec.contains(target[other], prereleases=True), (p.instance, comp, other)


@PROPERTY
@given(fleets())
def test_compile_never_lowers_a_version(fleet):
    for p in compile_plan(fleet, NOW).instances:
        for c in p.components:
            if c.from_version is not None:
                assert c.to_version is not None and c.to_version >= c.from_version


@PROPERTY
@given(fleets())
def test_compile_is_deterministic(fleet):
    first = json.dumps(compile_plan(fleet, NOW).to_json(), sort_keys=True)
    second = json.dumps(compile_plan(fleet, NOW).to_json(), sort_keys=True)
    assert first == second


@PROPERTY
@given(fleets(timed=True), st.lists(hours(-48, 24 * 40), min_size=2, max_size=5), st.data())
def test_a_memo_kept_across_times_changes_no_plan(fleet, offsets, data):
    memo = PlanMemo(fleet)
    for offset in offsets:
        when = NOW + offset
        assert compile_plan(fleet, when, memo=memo).to_json() == compile_plan(fleet, when).to_json()
        name = data.draw(st.sampled_from([i.name for i in fleet.instances]))
        one = compile_plan(fleet, when, instances=[name], memo=memo)
        assert one.to_json() == compile_plan(fleet, when, instances=[name]).to_json()


@st.composite
def histories(draw):
    statuses = list(ManifestStatus)
    out = []
    for n in range(1, draw(st.integers(1, 8)) + 1):
        status = draw(st.sampled_from(statuses))
        ran = status in (
            ManifestStatus.DEPLOYED,
            ManifestStatus.SUPERSEDED,
            ManifestStatus.ROLLED_BACK,
        )
        out.append(
            Revision(
                number=n,
                manifest=Manifest({"api": Version(draw(st.sampled_from(VERSIONS)))}),
                status=status,
                created_at=NOW - timedelta(days=30 - n),
                deployed_at=NOW - timedelta(days=30 - n) if ran else None,
            )
        )
    return out


@PROPERTY
@given(histories(), st.sampled_from(["previous", "r1", "r3", "2026-11-10T00:00:00Z"]))
def test_rollback_never_reuses_a_revision_number(history, target):
    try:
        plan = choose_rollback("acme-prod", history, RollbackTarget.parse(target), now=NOW)
    except RollbackError:
        return
    assert plan.number not in {r.number for r in history}
    assert plan.target.ran
