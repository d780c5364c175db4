"""The rules of DESIGN.md "Versions and eligibility", "Pins", "Compatibility",
"Policies", "Security advisories" and "Compile", one table at a time."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from packaging.version import Version

from fleet.core.channels import MaintenanceWindow, Policy
from fleet.core.fleetfile import parse_fleet_text
from fleet.core.plan import Decision, InstancePlan, PlanMemo, compile_plan
from tests.factories import (
    NOW,
    acceptance,
    advisory,
    at,
    channel,
    cv,
    instance,
    pin,
    state,
    versions,
)


def plan_one(st, name: str = "acme-prod") -> InstancePlan:
    plan = compile_plan(st, NOW)
    return next(p for p in plan.instances if p.instance == name)


def to(p: InstancePlan, component: str) -> str | None:
    c = next(c for c in p.components if c.component == component)
    return None if c.to_version is None else str(c.to_version)


def reason(p: InstancePlan, component: str) -> str:
    return next(c for c in p.components if c.component == component).reason


# --- eligibility ---------------------------------------------------------------

ELIGIBILITY = [
    # (id, channel kwargs, registry for api, expected api target, words in the reason)
    ("newest final", {}, [cv("api", "2.3.0"), cv("api", "2.4.0")], "2.4.0", "newest on stable"),
    (
        "pre-release refused",
        {},
        [cv("api", "2.3.0"), cv("api", "2.4.0"), cv("api", "2.5.0rc1")],
        "2.4.0",
        "final releases only",
    ),
    (
        "pre-release allowed",
        {"allow_prereleases": True},
        [cv("api", "2.3.0"), cv("api", "2.4.0"), cv("api", "2.5.0rc1")],
        "2.5.0rc1",
        "newest on stable",
    ),
    (
        "yanked newest",
        {},
        [
            cv("api", "2.3.0"),
            cv("api", "2.4.0"),
            cv("api", "2.4.1", yanked=True, yanked_reason="bad"),
        ],
        "2.4.0",
        "2.4.1 is yanked: bad",
    ),
    (
        "soak not passed",
        {"soak": timedelta(hours=48)},
        [cv("api", "2.3.0"), cv("api", "2.4.0", released_at=NOW - timedelta(hours=47))],
        "2.3.0",
        "soak 2d",
    ),
    (
        "soak passed",
        {"soak": timedelta(hours=48)},
        [cv("api", "2.3.0"), cv("api", "2.4.0", released_at=NOW - timedelta(hours=49))],
        "2.4.0",
        "newest on stable",
    ),
    (
        "channel constraint",
        {"constraint": "~=2.3.0"},
        [cv("api", "2.3.0"), cv("api", "2.3.4"), cv("api", "2.4.0")],
        "2.3.4",
        "channel constraint ~=2.3.0",
    ),
]


@pytest.mark.parametrize(
    ("chan", "registry", "expected", "words"),
    [case[1:] for case in ELIGIBILITY],
    ids=[case[0] for case in ELIGIBILITY],
)
def test_eligibility(chan, registry, expected, words):
    st = state(
        components=["api"],
        registry=registry,
        channels=[channel(**chan)],
        instances=[instance(current={"api": "2.3.0"})],
    )
    p = plan_one(st)
    assert to(p, "api") == expected
    assert words in reason(p, "api")


# --- pins ----------------------------------------------------------------------

API = versions("api", "2.2.0", "2.3.0", "2.3.5", "2.4.0", "3.0.0")


@pytest.mark.parametrize(
    ("pins", "expected", "words"),
    [
        ([pin("global", "api", "<3")], "2.4.0", "global pin <3"),
        ([pin("channel:stable", "api", "<2.4")], "2.3.5", "channel:stable pin <2.4"),
        ([pin("channel:beta", "api", "<2.4")], "3.0.0", "newest on stable"),
        ([pin("instance:acme-prod", "api", "==2.3.*")], "2.3.5", "instance:acme-prod pin"),
        ([pin("instance:globex-eu", "api", "==2.3.*")], "3.0.0", "newest on stable"),
        (
            [pin("global", "api", "<3"), pin("channel:stable", "api", "!=2.4.0")],
            "2.3.5",
            "channel:stable pin !=2.4.0",
        ),
        (
            [pin("global", "api", "<3", expires_at=NOW - timedelta(days=1))],
            "3.0.0",
            "newest on stable",
        ),
    ],
    ids=["global", "channel", "other-channel", "instance", "other-instance", "all-hold", "expired"],
)
def test_pins_intersect(pins, expected, words):
    st = state(
        components=["api"],
        registry=API,
        instances=[instance(current={"api": "2.3.0"})],
        pins=pins,
    )
    p = plan_one(st)
    assert to(p, "api") == expected
    assert words in reason(p, "api")


def test_expired_pin_is_ignored_and_reported():
    st = state(
        components=["api"],
        registry=API,
        instances=[instance(current={"api": "2.3.0"})],
        pins=[pin("global", "api", "<3", expires_at=NOW - timedelta(days=1))],
    )
    p = plan_one(st)
    assert any("expired pin ignored: global pin api<3" in w for w in p.warnings)


def test_pin_conflict_fails_only_that_instance_and_names_both_pins():
    st = state(
        components=["api"],
        registry=API,
        instances=[
            instance("acme-prod", current={"api": "2.3.0"}),
            instance("globex-eu", current={"api": "2.3.0"}),
        ],
        pins=[
            pin("global", "api", "<3", reason="3.x migration"),
            pin("instance:acme-prod", "api", ">=3", reason="needs 3.x feature"),
            pin("channel:stable", "api", "!=2.2.0", reason="harmless"),
        ],
    )
    plan = compile_plan(st, NOW)
    acme, globex = plan.instances
    assert acme.decision is Decision.ERROR
    (error,) = acme.errors
    assert "pin conflict on api" in error
    assert "global pin api<3" in error and "instance:acme-prod pin api>=3" in error
    assert "!=2.2.0" not in error  # only the pins that clash are named
    assert globex.decision is Decision.DEPLOY
    assert to(globex, "api") == "2.4.0"


def test_pin_broken_by_current_version_keeps_it_and_warns():
    st = state(
        components=["api"],
        registry=API,
        instances=[instance(current={"api": "2.4.0"})],
        pins=[pin("global", "api", "==2.3.*")],
    )
    p = plan_one(st)
    assert p.decision is Decision.NOOP
    assert to(p, "api") == "2.4.0"
    assert any("2.4.0 breaks global pin api==2.3.*" in w for w in p.warnings)


def test_unknown_current_version_fails_only_that_instance():
    st = state(
        components=["api"],
        registry=API,
        instances=[
            instance("acme-prod", current={"api": "2.3.9"}),
            instance("globex-eu", current={"api": "2.3.0"}),
        ],
    )
    acme, globex = compile_plan(st, NOW).instances
    assert acme.decision is Decision.ERROR
    assert acme.errors == ("api 2.3.9 is not in the version registry",)
    assert globex.decision is Decision.DEPLOY


# --- compatibility ---------------------------------------------------------------


def test_compatibility_picks_lexicographically_greatest_manifest():
    # api 2.5.0 needs web>=2.5, which does not exist: api stays on 2.4.x,
    # and web takes the newest that api 2.4.1 accepts.
    registry = [
        cv("api", "2.3.0"),
        cv("api", "2.4.1", requires={"web": ">=2.4,<2.6"}),
        cv("api", "2.5.0", requires={"web": ">=2.7"}),
        cv("web", "2.3.0"),
        cv("web", "2.4.0", requires={"api": ">=2.4"}),
        cv("web", "2.6.0", requires={"api": ">=2.5"}),
    ]
    st = state(registry=registry, instances=[instance(current={"api": "2.3.0", "web": "2.3.0"})])
    p = plan_one(st)
    assert (to(p, "api"), to(p, "web")) == ("2.4.1", "2.4.0")
    assert "compatibility with web 2.4.0 (api 2.5.0 requires web>=2.7)" in reason(p, "api")
    assert "compatibility with api 2.4.1 (web 2.6.0 requires api>=2.5)" in reason(p, "web")


def test_declared_order_decides_which_component_gets_its_newest():
    registry = [
        cv("api", "1.0"),
        cv("api", "2.0", requires={"web": "<2"}),
        cv("web", "1.0"),
        cv("web", "2.0"),
    ]
    first_api = state(
        components=["api", "web"],
        registry=registry,
        instances=[instance(current={"api": "1.0", "web": "1.0"})],
    )
    first_web = state(
        components=["web", "api"],
        registry=registry,
        instances=[instance(current={"api": "1.0", "web": "1.0"})],
    )
    p = plan_one(first_api)
    assert (to(p, "api"), to(p, "web")) == ("2.0", "1.0")
    p = plan_one(first_web)
    assert (to(p, "api"), to(p, "web")) == ("1.0", "2.0")


def test_no_compatible_combination_names_the_clash():
    registry = [
        cv("api", "2.4.0", requires={"web": ">=2.4"}),
        cv("web", "2.3.0"),
    ]
    st = state(registry=registry, instances=[instance(current={"api": "2.4.0", "web": "2.3.0"})])
    p = plan_one(st)
    assert p.decision is Decision.ERROR
    assert "no compatible combination" in p.errors[0]
    assert "api 2.4.0 requires web>=2.4" in p.errors[0]


def test_compile_never_lowers_a_version():
    st = state(
        components=["api"],
        registry=API,
        channels=[channel(constraint="<2.4")],
        instances=[instance(current={"api": "3.0.0"})],
    )
    p = plan_one(st)
    assert p.decision is Decision.NOOP
    assert to(p, "api") == "3.0.0"


def test_uninstalled_component_gets_the_newest():
    st = state(registry=[*API, cv("web", "1.0")], instances=[instance(current={"api": "2.4.0"})])
    p = plan_one(st)
    assert to(p, "web") == "1.0"
    assert reason(p, "web").startswith("not installed; newest")


# --- policies ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "override", "current", "decision", "approvals"),
    [
        (Policy.AUTO_UPDATE, None, "2.3.0", Decision.DEPLOY, 0),
        (Policy.MANUAL_APPROVAL, None, "2.3.0", Decision.NEEDS_APPROVAL, 2),
        (Policy.FROZEN, None, "2.3.0", Decision.SKIP_FROZEN, 0),
        (Policy.AUTO_UPDATE, Policy.FROZEN, "2.3.0", Decision.SKIP_FROZEN, 0),
        (Policy.FROZEN, Policy.MANUAL_APPROVAL, "2.3.0", Decision.NEEDS_APPROVAL, 2),
        (Policy.MANUAL_APPROVAL, Policy.AUTO_UPDATE, "2.3.0", Decision.DEPLOY, 0),
        (Policy.AUTO_UPDATE, None, "3.0.0", Decision.NOOP, 0),
        (Policy.FROZEN, None, "3.0.0", Decision.NOOP, 0),
        (Policy.MANUAL_APPROVAL, None, "3.0.0", Decision.NOOP, 0),
    ],
)
def test_policy_decides(policy, override, current, decision, approvals):
    st = state(
        components=["api"],
        registry=API,
        channels=[channel(policy=policy, approvals_required=2)],
        instances=[instance(current={"api": current}, policy_override=override)],
    )
    p = plan_one(st)
    assert p.decision is decision
    assert p.approvals_required == approvals
    assert p.policy is (override or policy)
    if decision is Decision.SKIP_FROZEN:
        assert to(p, "api") == "3.0.0"  # the plan is still computed and shown


def test_auto_update_mentions_the_maintenance_window():
    window = MaintenanceWindow("0 2 * * *", timedelta(hours=4), "UTC")
    st = state(
        components=["api"],
        registry=API,
        channels=[channel(window=window)],
        instances=[instance(current={"api": "2.3.0"})],
    )
    p = plan_one(st)
    assert p.decision is Decision.DEPLOY
    assert any("next opens 2026-11-27T02:00:00Z" in w for w in p.warnings)


# --- security advisories ------------------------------------------------------------

SEC = [
    cv("api", "2.3.0"),
    cv("api", "2.3.4"),
    cv("api", "2.3.5"),
    cv("api", "2.3.6"),
    cv("api", "2.4.0"),
    cv("api", "2.4.1"),
    cv("api", "2.5.0"),
]
CRITICAL = advisory(
    severity="critical",
    events=[{"introduced": "2.0"}, {"fixed": "2.3.5"}, {"introduced": "2.4.0"}, {"fixed": "2.4.1"}],
)


def sec_state(policy, current="2.3.0", *, pins=(), advisories=(CRITICAL,), **kw):
    return state(
        components=["api"],
        registry=SEC,
        channels=[channel(policy=policy)],
        instances=[instance(current={"api": current})],
        pins=pins,
        advisories=advisories,
        **kw,
    )


def test_critical_on_frozen_moves_to_minimal_fix_and_overrides_the_pin():
    st = sec_state(Policy.FROZEN, pins=[pin("instance:acme-prod", "api", "==2.3.0")])
    p = plan_one(st)
    assert p.decision is Decision.ENFORCE_SECURITY
    assert to(p, "api") == "2.3.5"  # smallest fix on the 2.3 line, not 2.5.0
    assert "same release line" in reason(p, "api")
    (override,) = p.pin_overrides
    assert override.pin is not None and str(override.pin.spec) == "==2.3.0"
    assert override.advisory == "FLEET-2026-0001"
    (flag,) = p.advisories
    assert flag.enforced and flag.fixed_by_plan


def test_fix_on_another_release_line_when_the_line_has_none():
    st = sec_state(Policy.FROZEN, current="2.4.0")
    p = plan_one(st)
    assert to(p, "api") == "2.4.1"
    st = sec_state(
        Policy.FROZEN,
        current="2.4.0",
        advisories=[advisory(events=[{"introduced": "2.4.0"}, {"fixed": "2.5.0"}])],
    )
    p = plan_one(st)
    assert to(p, "api") == "2.5.0"
    assert "no fix on the same release line" in reason(p, "api")


def test_manual_instance_gets_the_fix_without_approval():
    p = plan_one(sec_state(Policy.MANUAL_APPROVAL))
    assert p.decision is Decision.ENFORCE_SECURITY
    assert p.approvals_required == 0
    assert "approval waived by security policy" in p.warnings
    assert to(p, "api") == "2.3.5"


def test_auto_update_takes_the_normal_plan_when_it_fixes():
    p = plan_one(sec_state(Policy.AUTO_UPDATE))
    assert p.decision is Decision.ENFORCE_SECURITY
    assert to(p, "api") == "2.5.0"
    assert "fixes FLEET-2026-0001" in reason(p, "api")


def test_auto_update_takes_the_minimal_fix_when_the_normal_plan_does_not_fix():
    # A pin keeps the normal plan on an affected version: the fix overrides it.
    p = plan_one(sec_state(Policy.AUTO_UPDATE, pins=[pin("global", "api", "<2.3.5")]))
    assert p.decision is Decision.ENFORCE_SECURITY
    assert to(p, "api") == "2.3.5"
    assert [str(o.pin.spec) for o in p.pin_overrides if o.pin] == ["<2.3.5"]


@pytest.mark.parametrize(
    ("hours_after_publication", "enforced", "decision"),
    [(24 * 29, False, Decision.NEEDS_APPROVAL), (24 * 31, True, Decision.ENFORCE_SECURITY)],
    ids=["before-deadline", "after-deadline"],
)
def test_medium_advisory_before_and_after_its_deadline(hours_after_publication, enforced, decision):
    medium = advisory(
        severity="medium",
        published_at=NOW - timedelta(hours=hours_after_publication),
        events=[{"introduced": "0"}, {"fixed": "2.3.5"}],
    )
    p = plan_one(sec_state(Policy.MANUAL_APPROVAL, advisories=[medium]))
    (flag,) = p.advisories
    assert flag.enforced is enforced
    assert flag.deadline == medium.published_at + timedelta(days=30)
    assert p.decision is decision


def test_low_advisory_is_report_only():
    low = advisory(severity="low", published_at=NOW - timedelta(days=400), versions=["2.3.0"])
    p = plan_one(sec_state(Policy.FROZEN, advisories=[low]))
    assert p.decision is Decision.SKIP_FROZEN
    (flag,) = p.advisories
    assert flag.deadline is None and not flag.enforced


@pytest.mark.parametrize(
    ("until_offset", "decision"),
    [(timedelta(days=1), Decision.SKIP_FROZEN), (timedelta(seconds=-1), Decision.ENFORCE_SECURITY)],
    ids=["accepted", "acceptance-expired"],
)
def test_risk_acceptance_suspends_enforcement_until_it_ends(until_offset, decision):
    st = sec_state(
        Policy.FROZEN, risk_acceptances=[acceptance("acme-prod", until=NOW + until_offset)]
    )
    p = plan_one(st)
    assert p.decision is decision
    (flag,) = p.advisories
    assert (flag.risk_acceptance is not None) is (decision is Decision.SKIP_FROZEN)


def test_enforcement_moves_only_affected_components_on_frozen():
    registry = [*SEC, cv("web", "2.3.0"), cv("web", "2.4.0")]
    st = state(
        registry=registry,
        channels=[channel(policy=Policy.FROZEN)],
        instances=[instance(current={"api": "2.3.0", "web": "2.3.0"})],
        advisories=[CRITICAL],
    )
    p = plan_one(st)
    assert (to(p, "api"), to(p, "web")) == ("2.3.5", "2.3.0")
    assert "2.4.0 waits for the next plan" in reason(p, "web")


def test_fix_that_breaks_compatibility_is_an_error_naming_the_advisory():
    registry = [
        cv("api", "2.3.0"),
        cv("api", "2.3.5", requires={"web": ">=2.4"}),
        cv("web", "2.3.0"),
    ]
    st = state(
        registry=registry,
        channels=[channel(policy=Policy.FROZEN)],
        instances=[instance(current={"api": "2.3.0", "web": "2.3.0"})],
        advisories=[CRITICAL],
    )
    p = plan_one(st)
    assert p.decision is Decision.ERROR
    assert "FLEET-2026-0001" in p.errors[0]
    assert "api 2.3.5 requires web>=2.4" in p.errors[0]


def test_fix_overrides_soak_and_constraint_and_records_them():
    registry = [cv("api", "2.3.0"), cv("api", "2.3.5", released_at=NOW - timedelta(hours=1))]
    st = state(
        components=["api"],
        registry=registry,
        channels=[channel(policy=Policy.FROZEN, constraint="==2.3.0", soak=timedelta(days=2))],
        instances=[instance(current={"api": "2.3.0"})],
        advisories=[CRITICAL],
    )
    p = plan_one(st)
    assert to(p, "api") == "2.3.5"
    assert sorted(o.rule for o in p.overrides) == ["channel constraint ==2.3.0", "soak 2d"]
    assert p.pin_overrides == ()


def test_error_takes_precedence_over_enforcement():
    st = sec_state(
        Policy.FROZEN,
        pins=[pin("global", "api", "<2"), pin("channel:stable", "api", ">=2")],
    )
    assert plan_one(st).decision is Decision.ERROR


def test_unaffected_instance_is_untouched_by_an_advisory():
    p = plan_one(sec_state(Policy.FROZEN, current="2.3.6"))
    assert p.decision is Decision.SKIP_FROZEN
    assert p.advisories == ()


# --- the plan as a whole -------------------------------------------------------------


def test_selectors_pick_instances_channels_and_labels():
    st = state(
        components=["api"],
        registry=API,
        channels=[channel("stable"), channel("beta")],
        instances=[
            instance("a", current={"api": "2.3.0"}, labels={"region": "eu"}),
            instance("b", channel="beta", current={"api": "2.3.0"}, labels={"region": "us"}),
            instance("c", current={"api": "2.3.0"}, labels={"region": "us"}),
        ],
    )
    names = lambda **kw: [p.instance for p in compile_plan(st, NOW, **kw).instances]  # noqa: E731
    assert names() == ["a", "b", "c"]
    assert names(instances={"b"}) == ["b"]
    assert names(channels={"stable"}) == ["a", "c"]
    assert names(labels={"region": "us"}) == ["b", "c"]


def test_plan_json_has_the_documented_shape():
    p = compile_plan(sec_state(Policy.FROZEN), NOW).to_json()
    assert p["at"] == "2026-11-26T12:00:00Z"
    (item,) = p["instances"]
    assert set(item) >= {
        "instance",
        "channel",
        "policy",
        "decision",
        "approvals_required",
        "components",
        "advisories",
        "pin_overrides",
        "warnings",
        "errors",
    }
    assert item["decision"] == "enforce-security"
    assert item["components"]["api"]["from"] == "2.3.0"
    assert item["components"]["api"]["to"] == "2.3.5"
    assert set(item["advisories"][0]) >= {"id", "component", "severity", "deadline", "enforced"}


def test_naive_plan_time_is_refused():
    with pytest.raises(ValueError, match="no time zone"):
        compile_plan(sec_state(Policy.FROZEN), NOW.replace(tzinfo=None))


def test_version_spelling_is_normalised():
    assert Version("2.4.0-rc.1") == Version("2.4.0rc1")


def test_fix_on_an_already_incompatible_manifest_is_an_error():
    registry = [
        *SEC,
        cv("web", "2.3.0", requires={"worker": ">=2"}),
        cv("web", "2.4.0"),  # the normal plan can get out of the clash; a fix may not
        cv("worker", "1.0.0"),
    ]
    st = state(
        components=["api", "web", "worker"],
        registry=registry,
        channels=[channel(policy=Policy.FROZEN)],
        instances=[instance(current={"api": "2.3.0", "web": "2.3.0", "worker": "1.0.0"})],
        advisories=[CRITICAL],
    )
    p = plan_one(st)
    assert p.decision is Decision.ERROR
    assert "the components that stay are incompatible" in p.errors[0]
    assert "web 2.3.0 requires worker>=2" in p.errors[0]


# --- a memo kept across compiles -------------------------------------------------------

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fleet.yaml"


def timed_state():
    """A fleet whose plan changes with time: a soak ends, a pin expires, a risk
    acceptance ends, a medium advisory reaches its deadline, a window opens."""
    window = MaintenanceWindow("0 2 * * *", timedelta(hours=4), "UTC")
    medium = advisory(
        "FLEET-2026-0002",
        severity="medium",
        published_at=NOW - timedelta(days=25),  # deadline NOW + 5d
        events=[{"introduced": "0"}, {"fixed": "2.3.5"}],
    )
    critical = advisory(
        "FLEET-2026-0003",
        "web",
        severity="critical",
        events=[{"introduced": "2.3.1"}, {"fixed": "2.3.2"}],
    )
    return state(
        registry=[
            cv("api", "2.3.0"),
            cv("api", "2.3.5", released_at=NOW - timedelta(hours=60)),
            cv("api", "2.4.0", released_at=NOW - timedelta(hours=24)),
            cv("api", "2.4.1", yanked=True, yanked_reason="bad"),
            cv("api", "2.5.0rc1", released_at=NOW - timedelta(hours=6)),
            cv("web", "2.3.0"),
            cv("web", "2.3.1"),
            cv("web", "2.3.2", released_at=NOW - timedelta(hours=12)),
            cv("web", "2.4.0", requires={"api": ">=2.4"}, released_at=NOW - timedelta(hours=6)),
        ],
        channels=[
            channel("stable", soak=timedelta(hours=48), window=window),
            channel("beta", allow_prereleases=True),
            channel("lts", Policy.MANUAL_APPROVAL, constraint="<2.4", soak=timedelta(hours=72)),
        ],
        instances=[
            instance("acme-prod", current={"api": "2.3.0", "web": "2.3.0"}),
            instance("globex-prod", channel="beta", current={"api": "2.3.0", "web": "2.3.1"}),
            instance("initech-prod", channel="lts", current={"api": "2.3.0", "web": "2.3.0"}),
            instance("umbrella-prod", current={"api": "2.3.0", "web": "2.3.1"}),
            instance("hooli-prod", policy_override="frozen", current={"api": "2.3.0"}),
        ],
        pins=[
            pin("instance:acme-prod", "api", "<2.4", expires_at=NOW + timedelta(days=3)),
            pin("channel:beta", "web", "!=2.4.0"),
        ],
        advisories=[medium, critical],
        risk_acceptances=[
            acceptance("initech-prod", "FLEET-2026-0002", until=NOW + timedelta(days=3)),
            acceptance("umbrella-prod", "FLEET-2026-0003", until=NOW + timedelta(hours=20)),
        ],
    )


TIMED = [
    NOW - timedelta(days=1),
    NOW,
    NOW + timedelta(hours=15),  # stable's window is open
    NOW + timedelta(days=1, hours=1),  # api 2.4.0 has soaked on stable
    NOW + timedelta(days=1, hours=15),  # web 2.3.2 has soaked on stable, web 2.4.0 not yet
    # web 2.4.0 has soaked, but acme's pin keeps api below what it requires: the
    # same choice as before for a reason that no longer names the soak.
    NOW + timedelta(days=2, hours=3),
    NOW + timedelta(days=3, minutes=1),  # acme's pin and initech's risk acceptance have ended
    NOW + timedelta(days=5, hours=1),  # the medium advisory is past its deadline
]
EXAMPLE_TIMES = [
    at("2026-11-20T10:00"),
    at("2026-11-26T12:00"),
    at("2026-11-27T03:00"),  # inside the stable window (02:00-06:00 Berlin)
    at("2026-11-27T15:00"),  # the 2026-11-25 releases have soaked 48h
    at("2026-12-11T00:00"),  # the medium advisory is past its deadline
    at("2027-01-02T00:00"),  # the risk acceptance has ended
    at("2027-04-01T00:00"),  # the LTS pin has expired
]


def example_state():
    return parse_fleet_text(EXAMPLE.read_text()).to_state()


@pytest.mark.parametrize(
    ("make", "times"),
    [(timed_state, TIMED), (example_state, EXAMPLE_TIMES)],
    ids=["timed", "example"],
)
def test_a_memo_kept_across_times_changes_no_plan(make, times):
    st = make()
    fresh = {when: compile_plan(st, when).to_json() for when in times}
    assert len({json.dumps(p["instances"], sort_keys=True) for p in fresh.values()}) > 3
    memo = PlanMemo(st)
    # Later times first as well: what one time fills in must not leak into another.
    for when in [*times, *reversed(times)]:
        assert compile_plan(st, when, memo=memo).to_json() == fresh[when]
        for inst in st.instances:
            one = compile_plan(st, when, instances=[inst.name], memo=memo).to_json()
            assert one == compile_plan(st, when, instances=[inst.name]).to_json()


def test_a_memo_selects_instances_in_file_order():
    st = timed_state()
    memo = PlanMemo(st)
    names = ["hooli-prod", "acme-prod", "nobody", "acme-prod"]
    plan = compile_plan(st, NOW, instances=names, channels={"stable"}, memo=memo)
    assert [p.instance for p in plan.instances] == ["acme-prod", "hooli-prod"]
    assert plan == compile_plan(st, NOW, instances=names, channels={"stable"})


def test_a_memo_of_another_state_is_refused():
    memo = PlanMemo(timed_state())
    with pytest.raises(ValueError, match="plan memo: it was made for another fleet state"):
        compile_plan(timed_state(), NOW, memo=memo)
