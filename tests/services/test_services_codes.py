"""One-time approval codes and approval records, on both database backends."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, select

from fleet.core.approvals import Request, Verdict
from fleet.core.errors import ConflictError, InvalidIdentity, NotFoundError, PermissionDenied
from fleet.db.engine import transaction
from fleet.db.history import APPROVAL_CODE
from fleet.services import approvals, audit, codes, deployments, tokens
from fleet.services.codes import CODE_LIFETIME, CodeRefused
from fleet.services.fleet import apply_fleet_file
from fleet.services.manifests import compile_and_store
from fleet.services.tokens import Principal, Role
from tests.factories import NOW
from tests.services.test_services_apply import example

RUN = "0f8b1c7e-3d2a-4c55-9d43-6f7a2b1e9c10"
OTHER = "11111111-2222-4333-8444-555555555555"
BOB = Principal("bob", Role.APPROVER)


def waiting(engine: Engine, run: str = RUN, *, requested_by: str = "alice") -> Request:
    """A run that waits for one approval of lts-1's newest revision."""
    apply_fleet_file(example(), actor="ops", now=NOW, engine=engine)
    stored = compile_and_store(actor="ops", now=NOW, engine=engine)
    name = next(i.instance for i in stored.plan.instances if i.decision.value == "needs-approval")
    number = stored.revisions[name]
    manifest = next(i.manifest for i in stored.plan.instances if i.instance == name)
    assert manifest is not None
    request = Request(name, number, manifest.hash, 1)
    approvals.open_requests(
        [request],
        requested_by=requested_by,
        deadlines={name: NOW + timedelta(hours=72)},
        flow_run_id=run,
        now=NOW,
        engine=engine,
    )
    return request


@pytest.fixture
def bob(engine: Engine) -> Principal:
    tokens.create_token("bob", "approver", actor="tests", now=NOW, engine=engine)
    return BOB


def test_a_code_approves_once_as_its_holder(engine: Engine, bob: Principal) -> None:
    waiting(engine)
    issued = codes.issue_code(RUN, principal=bob, now=NOW, engine=engine)
    assert issued.expires_at == NOW + CODE_LIFETIME == NOW + timedelta(minutes=15)
    assert len(issued.code) == 23 and issued.code.count("-") == 3
    with transaction(engine) as session:
        (stored,) = session.execute(select(APPROVAL_CODE)).all()
    assert issued.code not in str(tuple(stored)) and stored.principal == "bob"
    spent = f"  {issued.code.lower().replace('-', ' ')} "  # how people paste it
    assert (
        codes.redeem_code(spent, flow_run_id=RUN, key="approval-1", now=NOW, engine=engine) == "bob"
    )
    # The same form read again (a replayed run) gives the same holder; any other use is refused.
    assert (
        codes.redeem_code(issued.code, flow_run_id=RUN, key="approval-1", now=NOW, engine=engine)
        == "bob"
    )
    with pytest.raises(CodeRefused, match="used already") as refused:
        codes.redeem_code(issued.code, flow_run_id=RUN, key="approval-2", now=NOW, engine=engine)
    assert refused.value.principal == "bob"
    actions = [e.action for e in audit.events(engine=engine)]
    assert actions.count("approval.code.issue") == 1 and actions.count("approval.code.spend") == 1
    assert issued.code not in str([e.details for e in audit.events(engine=engine)])
    assert audit.verify(engine=engine).ok


@pytest.mark.parametrize(
    ("after", "valid"),
    [(timedelta(minutes=14, seconds=59), True), (timedelta(minutes=15), False)],
)
def test_a_code_is_valid_fifteen_minutes(engine: Engine, bob: Principal, after, valid) -> None:
    waiting(engine)
    code = codes.issue_code(RUN, principal=bob, now=NOW, engine=engine).code
    redeem = lambda: codes.redeem_code(  # noqa: E731
        code, flow_run_id=RUN, key="approval-1", now=NOW + after, engine=engine
    )
    if valid:
        assert redeem() == "bob"
    else:
        with pytest.raises(CodeRefused, match="expired"):
            redeem()


def test_a_foreign_code_is_refused_and_spent(engine: Engine, bob: Principal) -> None:
    waiting(engine)
    code = codes.issue_code(RUN, principal=bob, now=NOW, engine=engine).code
    with pytest.raises(CodeRefused, match=f"issued for run {RUN}, not this one"):
        codes.redeem_code(code, flow_run_id=OTHER, key="approval-1", now=NOW, engine=engine)
    with pytest.raises(CodeRefused, match="used already"):  # it may have leaked: spent
        codes.redeem_code(code, flow_run_id=RUN, key="approval-1", now=NOW, engine=engine)


@pytest.mark.parametrize(
    ("code", "why"),
    [
        ("", "not an approval code"),
        ("AAAAA-BBBBB-CCCCC-DDDD", "not an approval code"),
        ("AAAAA-BBBBB-CCCCC-DDDDDD", "not an approval code"),
        ("AAAAA-BBBBB-CCCCC-DDDD0", "not an approval code"),  # no zero in the alphabet
        ("AAAAA-BBBBB-CCCCC-DDDD\u200b", "not an approval code"),
        ("x" * 100_000, "not an approval code"),
        ("AAAAA-BBBBB-CCCCC-DDDDD", "unknown approval code"),
    ],
)
def test_what_is_no_code_is_refused(engine: Engine, code: str, why: str) -> None:
    with pytest.raises(CodeRefused, match=why):
        codes.redeem_code(code, flow_run_id=RUN, key="approval-1", now=NOW, engine=engine)


def test_a_revoked_token_voids_its_codes(engine: Engine, bob: Principal) -> None:
    waiting(engine)
    code = codes.issue_code(RUN, principal=bob, now=NOW, engine=engine).code
    tokens.revoke_token("bob", actor="admin", now=NOW, engine=engine)
    with pytest.raises(CodeRefused, match="void"):
        codes.redeem_code(code, flow_run_id=RUN, key="approval-1", now=NOW, engine=engine)


def test_codes_are_refused_to_the_requester_viewers_and_for_runs_that_wait_for_nothing(
    engine: Engine, bob: Principal
) -> None:
    with pytest.raises(NotFoundError, match="no approval"):
        codes.issue_code(RUN, principal=bob, now=NOW, engine=engine)
    waiting(engine, requested_by="Bob")
    with pytest.raises(PermissionDenied, match="four eyes"):
        codes.issue_code(RUN, principal=bob, now=NOW, engine=engine)
    refused = [e for e in audit.events(engine=engine) if e.action == "approval.refused"]
    assert [e.actor for e in refused] == ["bob"]
    with pytest.raises(PermissionDenied, match="does not grant 'approver'"):
        codes.issue_code(RUN, principal=Principal("vic", Role.VIEWER), now=NOW, engine=engine)
    with pytest.raises(PermissionDenied, match="does not grant 'approver'"):
        codes.issue_code(RUN, principal=Principal("otto", Role.OPERATOR), now=NOW, engine=engine)


def test_no_code_once_the_run_has_decided(engine: Engine, bob: Principal) -> None:
    request = waiting(engine)
    approvals.record(
        request.instance,
        approver="carol",
        decision="approve",
        comment="",
        verified=False,
        flow_run_id=RUN,
        manifest_number=request.revision,
        manifest_hash=request.manifest_hash,
        via="form",
        now=NOW,
        engine=engine,
    )
    tally = approvals.tally(RUN, engine=engine)
    assert tally is not None and tally.verdict(request.instance) is Verdict.APPROVED
    with pytest.raises(ConflictError, match="waits for no approval"):
        codes.issue_code(RUN, principal=bob, now=NOW, engine=engine)


def test_recording_is_idempotent_per_person_and_the_requester_never_approves(
    engine: Engine,
) -> None:
    request = waiting(engine, requested_by="Alice")

    def decide(approver: str, *, verified: bool = False, decision: str = "approve") -> object:
        return approvals.record(
            request.instance,
            approver=approver,
            decision=decision,
            comment="",
            verified=verified,
            flow_run_id=RUN,
            manifest_number=request.revision,
            manifest_hash=request.manifest_hash,
            via="form",
            now=NOW,
            engine=engine,
        )

    with pytest.raises(PermissionDenied, match="four eyes"):
        decide("ALICE")
    with pytest.raises(PermissionDenied, match="four eyes"):
        decide("ａｌｉｃｅ", verified=True)
    with pytest.raises(InvalidIdentity, match="U\\+200B"):
        decide("bob\u200b")
    decide("alice", decision="reject")  # the requester may withdraw
    first = decide("carol", verified=True)
    assert decide("Carol") == first  # a typed echo of a verified decision adds nothing
    assert decide("carol ", verified=True) == first
    given = deployments.approvals_for(request.instance, flow_run_id=RUN, engine=engine)
    assert [(a.approver, a.decision, a.verified) for a in given] == [
        ("alice", "reject", False),
        ("carol", "approve", True),
    ]


def test_token_names_that_are_one_person_cannot_both_exist(engine: Engine) -> None:
    tokens.create_token("alice", "approver", actor="tests", now=NOW, engine=engine)
    with pytest.raises(ConflictError, match="'Alice' exists already as 'alice'"):
        tokens.create_token("Alice", "admin", actor="tests", now=NOW, engine=engine)
