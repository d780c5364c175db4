"""Approvals that mean what they say, on a real Prefect server with real agents:
one person counts once however the name is written, names that are no names
are refused, verified-only channels, one-time codes, approvals bound to the
revision they were shown (stale when the fleet moved), and each instance
deployed as soon as its own approvals are complete."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prefect.flow_runs import resume_flow_run

from fleet.services import approvals, audit, codes, deployments, manifests, pins, runs
from fleet.services.tokens import Principal, Role, create_token
from flows.compile_and_deploy import compile_and_deploy
from flows.patch_rollout import patch_rollout
from tests.flows.runs import FAST, form_description, paused_for, paused_run, run_in_thread
from tests.flows.support import World, build_world

pytestmark = pytest.mark.usefixtures("prefect_server", "fleet_db")

BOB = Principal("bob", Role.APPROVER)


def refusals(run_id: str) -> list[dict[str, Any]]:
    return [
        dict(e.details)
        for e in audit.events()
        if e.action == "approval.refused" and e.flow_run_id == run_id
    ]


def finish(thread: Any, box: dict[str, Any]) -> dict[str, Any]:
    thread.join(120)
    assert not thread.is_alive(), "the run did not finish"
    assert "error" not in box, box.get("error")
    return dict(box["result"])


def test_carol_then_Carol_counts_once(tmp_path, start_agent):
    """Seen: the `lts` run (2 approvers) approved as `carol`, then as `Carol`, deployed."""
    world = build_world(tmp_path, start_agent, [("m1", "manual", None)], approvals_required=2)
    thread, box = run_in_thread(compile_and_deploy, requested_by="alice", strategy=FAST)
    run_id = paused_run("compile-and-deploy")

    resume_flow_run(run_id, run_input={"approver": "carol"})
    paused_for(run_id, 2)
    resume_flow_run(run_id, run_input={"approver": "Carol"})
    paused_for(run_id, 3)  # one person, still one approval of two
    resume_flow_run(run_id, run_input={"approver": " CAROL\n"})
    paused_for(run_id, 4)
    assert world.applies("m1") == []
    assert "Approved so far by: carol" in form_description(run_id)
    resume_flow_run(run_id, run_input={"approver": "dave"})

    assert finish(thread, box)["outcomes"] == {"m1": "succeeded"}
    given = deployments.approvals_for("m1", flow_run_id=run_id)
    assert [a.approver for a in given] == ["carol", "dave"]  # one record per person


def test_the_requester_with_a_zero_width_space_is_refused(tmp_path, start_agent):
    """Seen: the requester typing `alice` + U+200B approved her own run."""
    world = build_world(tmp_path, start_agent, [("m1", "manual", None)], approvals_required=1)
    thread, box = run_in_thread(compile_and_deploy, requested_by="alice", strategy=FAST)
    run_id = paused_run("compile-and-deploy")

    for number, name in enumerate(["alice\u200b", "ALICE", "ａｌｉｃｅ", "\ufeffalice"], start=2):
        resume_flow_run(run_id, run_input={"approver": name})
        paused_for(run_id, number)
    assert world.applies("m1") == [] and approvals.given(run_id) == []
    reasons = [r["reason"] for r in refusals(run_id)]
    assert "U+200B is an invisible format character" in reasons[0]
    assert all("four eyes" in r for r in reasons[1:3]) and "U+FEFF" in reasons[3]
    assert [r["approver"] for r in refusals(run_id)][:2] == ["alice\u200b", "ALICE"]

    # Instances the run does not wait for: refused on the run's own instance, never
    # recorded as a subject of their own; input over the form's limits never arrives.
    resume_flow_run(run_id, run_input={"approver": "bob", "instances": [f"x{i}" for i in range(9)]})
    paused_for(run_id, 6)
    last = [e for e in audit.events() if e.action == "approval.refused"][-1]
    assert last.subject == "instance:m1"
    assert last.details["reason"].endswith("'x3', 'x4' and 4 more")
    for bad in ({"approver": "b" * 201}, {"comment": "c" * 4097}, {"code": "k" * 65}):
        with pytest.raises(Exception, match=r"(?i)validat|too long|at most"):
            resume_flow_run(run_id, run_input=bad)
    resume_flow_run(run_id, run_input={"approver": "bob"})
    assert finish(thread, box)["outcomes"] == {"m1": "succeeded"}


def test_a_verified_approval_and_the_same_name_typed_count_once(tmp_path, start_agent):
    """Seen: the API's verified `demo-approver` plus a typed `Demo-Approver` counted as two."""
    world = build_world(tmp_path, start_agent, [("m1", "manual", None)], approvals_required=2)
    thread, box = run_in_thread(compile_and_deploy, requested_by="alice", strategy=FAST)
    run_id = paused_run("compile-and-deploy")

    (verified,) = runs.decide(run_id, approver="demo-approver", decision="approve")
    assert verified.verified and verified.manifest_hash == manifests.history("m1")[-1].hash
    paused_for(run_id, 2)
    resume_flow_run(run_id, run_input={"approver": "Demo-Approver"})
    paused_for(run_id, 3)
    assert world.applies("m1") == []
    given = deployments.approvals_for("m1", flow_run_id=run_id)
    # One person: the typed echo of a verified decision adds nothing (not even a record).
    assert [(a.approver, a.verified) for a in given] == [("demo-approver", True)]
    assert "Approved so far by: demo-approver" in form_description(run_id)

    resume_flow_run(run_id, run_input={"approver": "erin"})
    assert finish(thread, box)["outcomes"] == {"m1": "succeeded"}


def test_a_verified_only_channel_ignores_typed_names_and_a_code_approves(tmp_path, start_agent):
    world = build_world(tmp_path, start_agent, [("m1", "manual", None)], approvals_required=1)
    world.data["channels"][1]["verified_approvals"] = True
    world.apply()
    create_token("bob", "approver", actor="tests")
    thread, box = run_in_thread(compile_and_deploy, requested_by="alice", strategy=FAST)
    run_id = paused_run("compile-and-deploy")
    form = form_description(run_id)
    assert "counts verified approvals only" in form and f"fleet approvals code {run_id}" in form

    resume_flow_run(run_id, run_input={"approver": "bob"})
    paused_for(run_id, 2)  # recorded, not counted
    assert world.applies("m1") == []
    issued = codes.issue_code(run_id, principal=BOB)
    resume_flow_run(
        run_id, run_input={"approver": "mallory", "code": issued.code.lower(), "comment": "ok"}
    )

    assert finish(thread, box)["outcomes"] == {"m1": "succeeded"}
    given = deployments.approvals_for("m1", flow_run_id=run_id)
    assert [(a.approver, a.verified, a.comment) for a in given] == [
        ("bob", False, ""),
        ("bob", True, "ok"),  # the code's holder, not the typed name
    ]
    (event,) = [e for e in audit.events() if e.action == "approval.approve" and e.actor == "bob"][
        -1:
    ]
    assert event.details["via"] == "code" and event.details["verified"] is True


def test_spent_expired_and_foreign_codes_are_refused_and_recorded(tmp_path, start_agent):
    world = build_world(tmp_path, start_agent, [("m1", "manual", None)], approvals_required=2)
    create_token("bob", "approver", actor="tests")
    create_token("carol", "approver", actor="tests")
    thread, box = run_in_thread(compile_and_deploy, requested_by="alice", strategy=FAST)
    run_id = paused_run("compile-and-deploy")

    code = codes.issue_code(run_id, principal=BOB).code
    resume_flow_run(run_id, run_input={"code": code})
    paused_for(run_id, 2)
    resume_flow_run(run_id, run_input={"approver": "carol", "code": code})  # spent
    paused_for(run_id, 3)
    stale = codes.issue_code(
        run_id,
        principal=Principal("carol", Role.APPROVER),
        now=datetime.now(UTC) - timedelta(hours=1),
    ).code
    resume_flow_run(run_id, run_input={"code": stale})
    paused_for(run_id, 4)
    resume_flow_run(run_id, run_input={"code": "AAAAA-BBBBB-CCCCC-DDDDD"})
    paused_for(run_id, 5)
    assert world.applies("m1") == []
    reasons = [r["reason"] for r in refusals(run_id)]
    assert "used already" in reasons[0] and "expired" in reasons[1]
    assert reasons[2] == "unknown approval code"
    assert refusals(run_id)[0]["typed"] == "carol"
    assert code not in str([e.details for e in audit.events()])  # never the code itself

    resume_flow_run(
        run_id,
        run_input={
            "code": codes.issue_code(run_id, principal=Principal("carol", Role.APPROVER)).code
        },
    )
    assert finish(thread, box)["outcomes"] == {"m1": "succeeded"}
    given = deployments.approvals_for("m1", flow_run_id=run_id)
    assert [(a.approver, a.verified) for a in given] == [("bob", True), ("carol", True)]


def test_an_instance_deploys_as_soon_as_its_own_approvals_are_complete(tmp_path, start_agent):
    world = build_world(
        tmp_path,
        start_agent,
        [("m1", "manual", None), ("m2", "manual", None)],
        approvals_required=1,
    )
    thread, box = run_in_thread(compile_and_deploy, requested_by="alice", strategy=FAST)
    run_id = paused_run("compile-and-deploy")

    resume_flow_run(run_id, run_input={"approver": "bob", "instances": ["m1"]})
    paused_for(run_id, 2)  # still waiting for m2 ...
    assert world.running("m1") == {"api": "1.1.0", "web": "1.1.0"}  # ... m1 is deployed already
    assert [d.outcome for d in deployments.deployments_of("m1")] == ["succeeded"]
    assert world.applies("m2") == []
    assert "m1" not in form_description(run_id).split("# Approval needed")[1].split("##", 1)[1]

    resume_flow_run(run_id, run_input={"approver": "bob", "decision": "reject"})
    report = finish(thread, box)
    assert report["outcomes"] == {"m1": "succeeded", "m2": "skipped"}
    assert world.applies("m2") == []


def _advise_critical(world: World, *, fixed: str) -> None:
    world.data["advisories"] = [
        {
            "id": "FLEET-2026-0099",
            "component": "api",
            "severity": "critical",
            "published_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}],
        }
    ]
    world.apply()


def test_a_security_fix_deployed_while_it_waits_makes_the_approval_stale(tmp_path, start_agent):
    """Seen: r1 (web only) approved after patch-rollout moved api to its fix: the agent went
    back to the vulnerable api, the fix was marked superseded."""
    world = build_world(
        tmp_path, start_agent, [("m1", "manual", None)], versions=("1.0.0",), approvals_required=1
    )
    world.publish("web", "1.1.0")
    thread, box = run_in_thread(compile_and_deploy, requested_by="alice", strategy=FAST)
    run_id = paused_run("compile-and-deploy")
    (r1,) = manifests.history("m1")
    assert r1.changes == {"web": ("1.0.0", "1.1.0")}

    world.publish("api", "1.0.1")
    _advise_critical(world, fixed="1.0.1")
    patched = patch_rollout(requested_by="secops", strategy=FAST)
    assert patched["outcomes"] == {"m1": "succeeded"}
    fixed = {"api": "1.0.1", "web": "1.0.0"}
    assert world.running("m1") == fixed

    resume_flow_run(run_id, run_input={"approver": "bob"})
    report = finish(thread, box)
    assert report["outcomes"] == {"m1": "stale-approval"}
    assert world.running("m1") == fixed  # the fix stays
    (record,) = [d for d in deployments.deployments_of("m1") if d.flow_run_id == run_id]
    assert record.outcome == "stale-approval"
    assert "runs api 1.0.1 now, not api 1.0.0" in (record.error or "")
    history = {h.revision.number: h.revision.status.value for h in manifests.history("m1")}
    assert history == {1: "superseded", 2: "deployed"}

    # The next run plans again, from what runs now.
    again = run_in_thread(compile_and_deploy, requested_by="alice", strategy=FAST)
    run2 = paused_run("compile-and-deploy")
    r3 = manifests.history("m1")[-1]
    assert r3.revision.number == 3 and r3.changes == {"web": ("1.0.0", "1.1.0")}
    assert r3.revision.manifest.to_json() == {"api": "1.0.1", "web": "1.1.0"}
    resume_flow_run(run2, run_input={"approver": "bob"})
    assert finish(*again)["outcomes"] == {"m1": "succeeded"}
    assert world.running("m1") == {"api": "1.0.1", "web": "1.1.0"}
    assert audit.verify().ok


def test_a_newer_release_published_while_it_waits_changes_nothing(tmp_path, start_agent):
    world = build_world(tmp_path, start_agent, [("m1", "manual", None)], approvals_required=1)
    thread, box = run_in_thread(compile_and_deploy, requested_by="alice", strategy=FAST)
    run_id = paused_run("compile-and-deploy")
    world.publish("api", "1.2.0")
    world.publish("web", "1.2.0")

    resume_flow_run(run_id, run_input={"approver": "bob"})
    assert finish(thread, box)["outcomes"] == {"m1": "succeeded"}
    assert world.running("m1") == {"api": "1.1.0", "web": "1.1.0"}  # what was approved
    assert [h.revision.number for h in manifests.history("m1")] == [1]


def test_a_version_yanked_or_pinned_out_while_it_waits_makes_the_approval_stale(
    tmp_path, start_agent
):
    world = build_world(
        tmp_path,
        start_agent,
        [("m1", "manual", None), ("m2", "manual", None)],
        approvals_required=1,
    )
    thread, box = run_in_thread(compile_and_deploy, requested_by="alice", strategy=FAST)
    run_id = paused_run("compile-and-deploy")
    pins.add_pin("instance:m2", "api", "<1.1", reason="emergency: sessions lost", actor="ops")
    version = next(
        v for v in world.data["versions"] if (v["component"], v["version"]) == ("web", "1.1.0")
    )
    version.update(yanked=True, yanked_reason="breaks SSO")
    world.apply()

    resume_flow_run(run_id, run_input={"approver": "bob"})
    report = finish(thread, box)
    assert report["outcomes"] == {"m1": "stale-approval", "m2": "stale-approval"}
    assert world.applies("m1") == [] and world.applies("m2") == []
    errors = {
        d.instance: d.error or "" for n in ("m1", "m2") for d in deployments.deployments_of(n)
    }
    assert "web 1.1.0 is yanked (breaks SSO)" in errors["m1"]
    assert "api 1.1.0 is excluded by instance:m2 pin api<1.1" in errors["m2"]


def test_a_name_that_mixes_scripts_once_case_folded_is_refused_and_the_run_waits(
    tmp_path, start_agent
):
    """`bob` + U+0345 passed the check of the form's name, and then comparing it
    with the requester raised: the run failed instead of recording a refusal."""
    world = build_world(tmp_path, start_agent, [("m1", "manual", None)], approvals_required=1)
    thread, box = run_in_thread(compile_and_deploy, requested_by="alice", strategy=FAST)
    run_id = paused_run("compile-and-deploy")

    resume_flow_run(run_id, run_input={"approver": "bob\u0345"})
    paused_for(run_id, 2)
    assert world.applies("m1") == [] and approvals.given(run_id) == []
    [refused] = refusals(run_id)
    assert "GREEK SMALL LETTER IOTA is Greek, mixed with Latin" in refused["reason"]
    resume_flow_run(run_id, run_input={"approver": "bob"})
    assert finish(thread, box)["outcomes"] == {"m1": "succeeded"}
