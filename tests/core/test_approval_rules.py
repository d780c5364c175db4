"""Approvals: one four-eyes rule, one tally, and when an approval has gone stale."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from packaging.version import Version

from fleet.core.advisories import Security
from fleet.core.approvals import (
    ApprovalTally,
    ApprovedRevision,
    Ballot,
    Count,
    Request,
    Verdict,
    may_approve,
    refusal,
    stale_reasons,
)
from fleet.core.errors import InputError, InvalidIdentity
from fleet.core.identity import identity_key
from fleet.core.versions import Registry
from tests.factories import NOW, acceptance, advisory, cv, pin

H = "c0ffee"


def req(instance="lts-1", *, required=2, verified_only=False, revision=4, manifest_hash=H):
    return Request(instance, revision, manifest_hash, required, verified_only)


def vote(who, *, instance="lts-1", approve=True, verified=False, revision=4, manifest_hash=H):
    return Ballot(instance, who, approve, verified, revision, manifest_hash)


# --- four eyes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("approver", "requester", "allowed"),
    [
        ("bob", "alice", True),
        ("alice", "alice", False),
        ("Alice", "alice", False),
        (" alice ", "ALICE", False),
        ("ａｌｉｃｅ", "alice", False),  # full-width
        ("alice", "Alice\n", False),
        ("alicia", "alice", True),
    ],
)
def test_the_requester_never_approves(approver, requester, allowed):
    assert may_approve(approver, requester) is allowed
    assert (refusal(approver, requested_by=requester, approve=True) is None) is allowed
    assert refusal(approver, requested_by=requester, approve=False) is None  # may withdraw


@pytest.mark.parametrize("approver", ["alice\u200b", "al\u200dice", "", "  ", "\ufeffalice"])
def test_a_name_that_is_no_name_is_refused_not_compared(approver):
    """The requester typing `alice` + U+200B was counted as someone else."""
    why = refusal(approver, requested_by="alice", approve=True)
    assert why is not None and "Invalid approver" in why
    assert refusal(approver, requested_by="alice", approve=False) is not None
    with pytest.raises(InvalidIdentity):
        may_approve(approver, "alice")


@pytest.mark.parametrize(
    ("approver", "requester"),
    [
        ("bob\u0345", "alice"),  # a Greek iota once case-folded: refused, never raised
        ("bob", "ß" * 200),  # a requester whose key is longer than a stored name
    ],
)
def test_a_name_refusal_accepts_is_compared_without_raising(approver, requester):
    """The form's approver went through `refusal` and then raised in `may_approve`,
    which failed the waiting run instead of recording the refused input."""
    why = refusal(approver, requested_by=requester, approve=True)
    if why is None:
        assert may_approve(approver, requester)
    else:
        assert "Invalid approver" in why
        assert refusal(approver, requested_by=requester, approve=False) is not None


# --- the tally ----------------------------------------------------------------


def test_carol_then_Carol_counts_once():
    tally = ApprovalTally("alice", {"lts-1": req()})
    assert tally.add(vote("carol")) is Count.COUNTED
    assert tally.add(vote("Carol")) is Count.REPEATED
    assert tally.add(vote("CAROL ", verified=True)) is Count.REPEATED
    assert tally.verdict("lts-1") is Verdict.PENDING and tally.missing("lts-1") == 1
    assert tally.approvers("lts-1") == ["carol"]
    assert tally.add(vote("dave")) is Count.COUNTED
    assert tally.verdict("lts-1") is Verdict.APPROVED


def test_a_verified_and_a_typed_approval_of_one_person_count_once():
    tally = ApprovalTally("alice", {"lts-1": req()})
    assert tally.add(vote("demo-approver", verified=True)) is Count.COUNTED
    assert tally.add(vote("Demo-Approver")) is Count.REPEATED
    assert tally.verdict("lts-1") is Verdict.PENDING


def test_the_requester_is_never_counted_however_written():
    tally = ApprovalTally("Alice", {"lts-1": req(required=1)})
    for name in ("alice", "ALICE", " alice", "ａｌｉｃｅ"):
        assert tally.add(vote(name, verified=True)) is Count.FOUR_EYES
    assert tally.verdict("lts-1") is Verdict.PENDING
    with pytest.raises(InvalidIdentity):
        tally.add(vote("alice\u200b"))


def test_verified_only_channels_record_but_do_not_count_typed_names():
    tally = ApprovalTally("alice", {"lts-1": req(required=1, verified_only=True)})
    assert tally.add(vote("bob")) is Count.UNVERIFIED
    assert tally.add(vote("bob", approve=False)) is Count.UNVERIFIED  # nor a typed rejection
    assert tally.verdict("lts-1") is Verdict.PENDING
    assert tally.add(vote("bob", verified=True)) is Count.COUNTED
    assert tally.verdict("lts-1") is Verdict.APPROVED


def test_a_decision_on_another_revision_does_not_count():
    tally = ApprovalTally("alice", {"lts-1": req(required=1)})
    assert tally.add(vote("bob", revision=3)) is Count.OTHER_REVISION
    assert tally.add(vote("bob", manifest_hash="beef")) is Count.OTHER_REVISION
    assert tally.add(vote("bob", manifest_hash=None)) is Count.OTHER_REVISION
    assert tally.verdict("lts-1") is Verdict.PENDING


def test_one_rejection_rejects_and_later_decisions_change_nothing():
    tally = ApprovalTally("alice", {"m1": req("m1", required=1), "m2": req("m2", required=1)})
    assert tally.add(vote("alice", instance="m1", approve=False)) is Count.COUNTED
    assert tally.verdict("m1") is Verdict.REJECTED
    assert tally.rejection("m1") == vote("alice", instance="m1", approve=False)
    assert tally.add(vote("bob", instance="m1")) is Count.DECIDED
    assert tally.add(vote("bob", instance="m2")) is Count.COUNTED
    assert tally.add(vote("carol", instance="m2", approve=False)) is Count.DECIDED
    assert tally.approved() == ["m2"] and tally.pending() == []
    with pytest.raises(InputError, match="'m9'"):
        tally.add(vote("bob", instance="m9"))


def test_of_ignores_decisions_on_instances_the_run_does_not_wait_for():
    tally = ApprovalTally.of("alice", [req(required=1)], [vote("bob", instance="other")])
    assert tally.pending() == ["lts-1"]


def test_a_request_needs_at_least_one_approval():
    with pytest.raises(InputError, match="0"):
        req(required=0)


_people = st.sampled_from(["alice", "Alice", "bob", "BOB ", "ｂｏｂ", "carol", "Carol", "dave"])


@given(
    st.lists(st.tuples(_people, st.booleans()), max_size=12),
    st.integers(min_value=1, max_value=4),
    st.booleans(),
)
def test_the_tally_counts_distinct_people_other_than_the_requester(votes, required, verified_only):
    tally = ApprovalTally("alice", {"lts-1": req(required=required, verified_only=verified_only)})
    for who, verified in votes:
        tally.add(vote(who, verified=verified))
    counted = {
        identity_key(who)
        for who, verified in votes
        if identity_key(who) != "alice" and (verified or not verified_only)
    }
    assert len(tally.approvers("lts-1")) == min(len(counted), required)
    assert "alice" not in {identity_key(n) for n in tally.approvers("lts-1")}
    approved = tally.verdict("lts-1") is Verdict.APPROVED
    assert approved == (len(counted) >= required)
    # The order in which the same decisions arrive does not change the verdict.
    again = ApprovalTally("alice", {"lts-1": req(required=required, verified_only=verified_only)})
    for who, verified in reversed(votes):
        again.add(vote(who, verified=verified))
    assert again.verdict("lts-1") is tally.verdict("lts-1")


# --- stale approvals ------------------------------------------------------------

V = Version
BASE = {"api": V("2.3.3"), "worker": V("2.3.0")}
R1 = ApprovedRevision("vandelay-prod", "lts", 1, {"api": V("2.3.3"), "worker": V("2.3.1")}, BASE)
REGISTRY = [cv("api", "2.3.3"), cv("api", "2.3.4"), cv("worker", "2.3.0"), cv("worker", "2.3.1")]


def reasons(
    approved=R1, *, running=BASE, registry=REGISTRY, pins=(), advisories=(), accepted=()
) -> list[str]:
    return stale_reasons(
        approved,
        running=running,
        registry=Registry(registry),
        pins=list(pins),
        security=Security(list(advisories), list(accepted), now=NOW),
    )


def test_an_approval_still_safe_is_not_stale():
    assert reasons() == []


def test_a_newer_release_published_since_changes_nothing():
    assert reasons(registry=[*REGISTRY, cv("worker", "2.4.0"), cv("api", "2.4.0")]) == []


def test_a_security_fix_deployed_since_makes_it_stale():
    (why,) = reasons(running={"api": V("2.3.4"), "worker": V("2.3.0")})
    assert why == "vandelay-prod runs api 2.3.4 now, not api 2.3.3 as when revision 1 was planned"


@pytest.mark.parametrize(
    ("running", "text"),
    [
        ({"api": V("2.3.3")}, "runs worker (none) now, not worker 2.3.0"),
        ({**BASE, "web": V("1.0")}, None),  # a component the revision does not name
        ({**BASE, "worker": V("2.3.1")}, "runs worker 2.3.1 now"),
    ],
)
def test_any_change_of_what_the_revision_concerns_is_stale(running, text):
    found = reasons(running=running)
    assert (found == []) if text is None else (text in found[0])


def test_a_version_yanked_since_makes_it_stale():
    registry = [*REGISTRY[:3], cv("worker", "2.3.1", yanked=True, yanked_reason="corrupts queues")]
    assert reasons(registry=registry) == ["worker 2.3.1 is yanked (corrupts queues)"]


def test_a_kept_version_yanked_since_is_not_the_revision_s_doing():
    registry = [cv("api", "2.3.3", yanked=True), *REGISTRY[1:]]
    assert reasons(registry=registry) == []


def test_a_version_gone_from_the_registry_makes_it_stale():
    assert reasons(registry=REGISTRY[:3]) == ["worker 2.3.1 is no longer in the registry"]


@pytest.mark.parametrize(
    ("scope", "component", "spec", "stale"),
    [
        ("global", "worker", "<2.3.1", True),
        ("channel:lts", "worker", "==2.3.0", True),
        ("instance:vandelay-prod", "worker", "!=2.3.1", True),
        ("channel:stable", "worker", "<2.3.1", False),  # another channel's pin
        ("instance:acme-prod", "worker", "<2.3.1", False),
        ("global", "worker", "<3", False),
        ("global", "api", "<2.3.3", False),  # api does not move
    ],
)
def test_an_emergency_pin_excluding_a_chosen_version_makes_it_stale(scope, component, spec, stale):
    made = pin(scope, component, spec, reason="emergency")
    found = reasons(pins=[made])
    assert bool(found) is stale
    if stale:
        assert found == [f"worker 2.3.1 is excluded by {made.describe()}"]


def test_an_expired_pin_does_not_make_it_stale():
    expired = pin("global", "worker", "<2.3.1", expires_at=NOW - timedelta(minutes=1))
    assert reasons(pins=[expired]) == []


def test_an_advisory_enforced_now_on_a_chosen_version_makes_it_stale():
    critical = advisory("CVE-2026-1", "worker", events=[{"introduced": "2.3.1"}])
    (why,) = reasons(advisories=[critical])
    assert why == "worker 2.3.1 is affected by CVE-2026-1 (critical) on worker, enforced now"


@pytest.mark.parametrize(
    ("made", "accepted", "stale"),
    [
        # High, published an hour ago: not enforced before its deadline.
        (dict(severity="high", published_at=NOW - timedelta(hours=1)), False, False),
        (dict(severity="high", published_at=NOW - timedelta(days=8)), False, True),  # overdue
        (dict(severity="critical"), True, False),  # risk accepted on this instance
        (dict(severity="low", published_at=NOW - timedelta(days=400)), False, False),
    ],
)
def test_only_enforced_advisories_make_it_stale(made, accepted, stale):
    adv = advisory("CVE-2026-2", "worker", events=[{"introduced": "2.3.1"}], **made)
    ok = [acceptance("vandelay-prod", "CVE-2026-2", until=NOW + timedelta(days=1))]
    assert bool(reasons(advisories=[adv], accepted=ok if accepted else [])) is stale


def test_an_enforced_advisory_on_a_version_kept_as_is_is_not_the_revision_s_doing():
    critical = advisory("CVE-2026-3", "api", events=[{"introduced": "0"}])  # no fix at all
    assert reasons(advisories=[critical]) == []


def test_a_rollback_ignores_pins_and_yanks_but_not_enforced_advisories():
    back = ApprovedRevision(
        "vandelay-prod",
        "lts",
        3,
        {"api": V("2.3.3"), "worker": V("2.3.0")},
        {"api": V("2.3.3"), "worker": V("2.3.1")},
        rollback=True,
    )
    running = {"api": V("2.3.3"), "worker": V("2.3.1")}
    registry = [*REGISTRY[:2], cv("worker", "2.3.0", yanked=True), REGISTRY[3]]
    assert (
        reasons(back, running=running, registry=registry, pins=[pin("global", "worker", ">=2.3.1")])
        == []
    )
    critical = advisory("CVE-2026-4", "worker", events=[{"introduced": "0"}, {"fixed": "2.3.1"}])
    assert reasons(back, running=running, advisories=[critical]) == [
        "worker 2.3.0 is affected by CVE-2026-4 (critical) on worker, enforced now"
    ]


def test_every_reason_is_given_at_once():
    registry = [*REGISTRY[:3], cv("worker", "2.3.1", yanked=True)]
    critical = advisory("CVE-2026-5", "worker", events=[{"introduced": "2.3.1"}])
    found = reasons(
        running={"api": V("2.3.4"), "worker": V("2.3.0")},
        registry=registry,
        pins=[pin("global", "worker", "<2.3.1")],
        advisories=[critical],
    )
    assert len(found) == 4
