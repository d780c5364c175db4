"""DESIGN.md "Rollback": target selection over a given history, and the security floor."""

from __future__ import annotations

from datetime import timedelta

import pytest
from packaging.version import Version

from fleet.core.errors import InputError, NoRollbackTarget, RollbackRefused
from fleet.core.manifests import Manifest, ManifestStatus, Revision
from fleet.core.rollback import RollbackTarget, choose_rollback, running_at
from tests.factories import NOW, acceptance, advisory, at, pin

S = ManifestStatus


def rev(number, api, status, deployed, *, rollback_of=None):
    return Revision(
        number=number,
        manifest=Manifest({"api": Version(api)}),
        status=status,
        created_at=at("2026-10-01T00:00") + timedelta(days=number),
        deployed_at=None if deployed is None else at(deployed),
        rollback_of=rollback_of,
    )


HISTORY = [
    rev(1, "2.2.0", S.SUPERSEDED, "2026-10-02T02:00"),
    rev(2, "2.3.0", S.SUPERSEDED, "2026-10-20T02:00"),
    rev(3, "2.3.1", S.FAILED, None),
    rev(4, "2.4.0", S.ROLLED_BACK, "2026-11-05T02:00"),
    rev(5, "2.3.0", S.SUPERSEDED, "2026-11-06T02:00", rollback_of=2),
    rev(6, "2.4.1", S.DEPLOYED, "2026-11-20T02:00"),
]


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("previous", 5),  # r5 ran before r6 and is good
        ("r1", 1),
        ("2", 2),
        ("2026-10-25T00:00:00Z", 2),  # between r2's and r4's deployments
        ("2026-11-05T12:00:00+00:00", 4),  # r4 was running then, even if later rolled back
        ("2026-11-10T00:00:00Z", 5),
        ("2026-10-02T02:00:00Z", 1),  # the instant r1 started
    ],
)
def test_target_selection(target, expected):
    plan = choose_rollback("acme-prod", HISTORY, RollbackTarget.parse(target), now=NOW)
    assert plan.target.number == expected
    assert plan.rollback_of == expected
    assert plan.number == 7  # a new revision: history only moves forward


def test_previous_skips_rolled_back_failed_and_identical_revisions():
    history = [*HISTORY[:5], rev(6, "2.3.0", S.DEPLOYED, "2026-11-20T02:00")]
    # r5 has the same manifest as r6 (2.3.0), r4 was rolled back, r3 failed.
    plan = choose_rollback("acme-prod", history, RollbackTarget(), now=NOW)
    assert plan.target.number == 1


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("r3", "revision 3 never ran"),
        ("r9", "has no revision 9"),
        ("2026-09-01T00:00:00Z", "nothing was running on acme-prod"),
    ],
)
def test_impossible_targets(target, message):
    with pytest.raises(NoRollbackTarget, match=message):
        choose_rollback("acme-prod", HISTORY, RollbackTarget.parse(target), now=NOW)


def test_no_previous_good_revision():
    with pytest.raises(NoRollbackTarget, match="no earlier good revision"):
        choose_rollback("acme-prod", HISTORY[:1], RollbackTarget(), now=NOW)
    with pytest.raises(NoRollbackTarget, match="no deployed revision"):
        choose_rollback("acme-prod", [], RollbackTarget(), now=NOW)


@pytest.mark.parametrize("text", ["yesterday", "r-1", "2026-10-25T00:00:00", ""])
def test_bad_target_text_names_the_value(text):
    with pytest.raises(InputError, match=repr(text.strip())):
        RollbackTarget.parse(text)


CRITICAL_ON_2_3_0 = advisory(versions=["2.3.0"])


def test_security_floor_refuses_an_affected_target():
    with pytest.raises(RollbackRefused, match=r"FLEET-2026-0001 \(critical\) affects api 2.3.0"):
        choose_rollback(
            "acme-prod", HISTORY, RollbackTarget(), now=NOW, advisories=[CRITICAL_ON_2_3_0]
        )


def test_security_floor_allows_with_a_risk_acceptance():
    ra = acceptance("acme-prod", until=NOW + timedelta(days=7))
    plan = choose_rollback(
        "acme-prod",
        HISTORY,
        RollbackTarget(),
        now=NOW,
        advisories=[CRITICAL_ON_2_3_0],
        risk_acceptances=[ra],
    )
    assert plan.target.number == 5
    assert plan.accepted_risks == (ra,)
    assert any("risk accepted by ciso@vendor.example" in w for w in plan.warnings)


@pytest.mark.parametrize(
    "ra",
    [
        acceptance("acme-prod", until=NOW - timedelta(seconds=1)),  # expired
        acceptance("globex-eu", until=NOW + timedelta(days=7)),  # another instance
        acceptance("acme-prod", "FLEET-2026-0099", until=NOW + timedelta(days=7)),
    ],
    ids=["expired", "other-instance", "other-advisory"],
)
def test_security_floor_ignores_acceptances_that_do_not_cover(ra):
    with pytest.raises(RollbackRefused):
        choose_rollback(
            "acme-prod",
            HISTORY,
            RollbackTarget(),
            now=NOW,
            advisories=[CRITICAL_ON_2_3_0],
            risk_acceptances=[ra],
        )


def test_not_yet_enforced_advisory_does_not_block():
    medium = advisory(severity="medium", published_at=NOW - timedelta(days=1), versions=["2.3.0"])
    plan = choose_rollback("acme-prod", HISTORY, RollbackTarget(), now=NOW, advisories=[medium])
    assert plan.target.number == 5


def test_pins_never_block_a_rollback_but_are_reported():
    plan = choose_rollback(
        "acme-prod", HISTORY, RollbackTarget(), now=NOW, pins=[pin("global", "api", ">=2.4")]
    )
    assert plan.target.number == 5
    assert plan.warnings == ("rollback breaks global pin api>=2.4 ('test pin') (api 2.3.0)",)


def test_running_at_before_any_deployment_is_none():
    assert running_at(HISTORY, at("2026-10-01T00:00")) is None


def test_security_floor_judges_one_osv_record_per_component():
    """One record naming api (critical) and web (low): only the api entry blocks."""
    history = [
        Revision(
            number=1,
            manifest=Manifest({"api": Version("2.3.0"), "web": Version("2.3.0")}),
            status=S.SUPERSEDED,
            created_at=at("2026-10-01T00:00"),
            deployed_at=at("2026-10-02T00:00"),
        ),
        Revision(
            number=2,
            manifest=Manifest({"api": Version("2.3.5"), "web": Version("2.3.0")}),
            status=S.DEPLOYED,
            created_at=at("2026-11-01T00:00"),
            deployed_at=at("2026-11-02T00:00"),
        ),
    ]
    api = advisory("GHSA-1", "api", severity="critical", versions=["2.3.0"])
    web = advisory("GHSA-1", "web", severity="low", versions=["2.3.0"])
    with pytest.raises(RollbackRefused) as refused:
        choose_rollback("acme-prod", history, RollbackTarget(), now=NOW, advisories=[web, api])
    assert "GHSA-1 (critical) affects api 2.3.0" in str(refused.value)
    assert "web" not in str(refused.value)
    # The low entry alone never blocks, in whichever order the entries come.
    plan = choose_rollback("acme-prod", history, RollbackTarget(), now=NOW, advisories=[web])
    assert plan.target.number == 1
