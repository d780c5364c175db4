"""compile-and-deploy on a real Prefect server with real agents."""

from __future__ import annotations

import itertools

import pytest
from prefect.client.orchestration import get_client
from prefect.flow_runs import resume_flow_run

from fleet.services import audit, deployments, manifests
from flows.compile_and_deploy import Strategy, compile_and_deploy
from tests.flows.runs import FAST, paused_for, paused_run, run_in_thread
from tests.flows.support import build_world

pytestmark = pytest.mark.usefixtures("prefect_server", "fleet_db")


def outcome_of(instance: str) -> list[str]:
    return [d.outcome for d in deployments.deployments_of(instance)]


def statuses(instance: str) -> list[str]:
    return [h.revision.status.value for h in manifests.history(instance)]


def test_auto_deploys_frozen_stays_dry_run_changes_nothing(tmp_path, start_agent):
    world = build_world(
        tmp_path, start_agent, [("a1", "auto", None), ("a2", "auto", None), ("f1", "frozen", None)]
    )
    dry = compile_and_deploy(dry_run=True, requested_by="ops", strategy=FAST)
    assert dry["plan"]["deploy"] == 2 and dry["plan"]["skip-frozen"] == 1
    assert manifests.history("a1") == [] and world.applies("a1") == []

    report = compile_and_deploy(requested_by="ops", strategy=FAST)
    assert report["outcomes"] == {"a1": "succeeded", "a2": "succeeded"}
    assert world.running("a1") == {"api": "1.1.0", "web": "1.1.0"}
    assert world.applies("f1") == []
    assert statuses("a1") == ["deployed"]
    assert audit.verify().ok

    again = compile_and_deploy(requested_by="ops", strategy=FAST)
    assert again["outcomes"] == {}  # nothing to change: idempotent


def test_manual_instances_wait_then_deploy_after_two_distinct_approvals(tmp_path, start_agent):
    world = build_world(tmp_path, start_agent, [("m1", "manual", None), ("m2", "manual", None)])
    thread, box = run_in_thread(compile_and_deploy, requested_by="alice", strategy=FAST)
    run_id = paused_run("compile-and-deploy")
    assert world.applies("m1") == []

    resume_flow_run(run_id, run_input={"decision": "approve", "approver": "alice", "comment": "me"})
    paused_for(run_id, 2)  # the requester's own approval is refused; still waiting
    resume_flow_run(run_id, run_input={"decision": "approve", "approver": "bob", "comment": "ok"})
    paused_for(run_id, 3)  # one of two approvals
    assert world.applies("m1") == []
    resume_flow_run(
        run_id, run_input={"decision": "approve", "approver": "bob", "comment": "again"}
    )
    paused_for(run_id, 4)  # the same approver twice still counts once
    resume_flow_run(run_id, run_input={"decision": "approve", "approver": "carol"})
    thread.join(120)
    assert "error" not in box, box.get("error")
    assert box["result"]["outcomes"] == {"m1": "succeeded", "m2": "succeeded"}
    assert world.running("m2") == {"api": "1.1.0", "web": "1.1.0"}
    given = deployments.approvals_for("m1", flow_run_id=run_id)
    assert sorted(a.approver for a in given) == ["bob", "carol"]
    assert all(not a.verified for a in given)
    refused = [e for e in audit.events() if e.action == "approval.refused"]
    assert {e.details["approver"] for e in refused} == {"alice"}
    assert all(e.flow_run_id == run_id for e in refused)


def test_rejection_deploys_nothing_and_records_who_and_why(tmp_path, start_agent):
    world = build_world(
        tmp_path,
        start_agent,
        [("m1", "manual", None), ("m2", "manual", None)],
        approvals_required=1,
    )
    thread, box = run_in_thread(compile_and_deploy, requested_by="alice", strategy=FAST)
    run_id = paused_run("compile-and-deploy")
    resume_flow_run(
        run_id,
        run_input={
            "decision": "reject",
            "approver": "bob",
            "comment": "not now",
            "instances": ["m1"],
        },
    )
    paused_for(run_id, 2)
    resume_flow_run(run_id, run_input={"decision": "approve", "approver": "carol"})
    thread.join(120)
    assert box["result"]["outcomes"] == {"m1": "skipped", "m2": "succeeded"}
    assert world.applies("m1") == []
    (record,) = deployments.deployments_of("m1")
    assert record.error == "rejected by bob: not now"


def test_approval_timeout_deploys_nothing_and_records_the_expiry(tmp_path, start_agent):
    world = build_world(
        tmp_path, start_agent, [("m1", "manual", None)], approvals_required=1, approval_timeout="3s"
    )
    thread, box = run_in_thread(compile_and_deploy, requested_by="alice", strategy=FAST)
    thread.join(60)
    assert not thread.is_alive()
    assert box["result"]["outcomes"] == {"m1": "expired"}
    assert world.applies("m1") == []
    assert outcome_of("m1") == ["expired"]
    assert "no approval by" in (deployments.deployments_of("m1")[0].error or "")


def test_failing_canary_halts_before_any_batch(tmp_path, start_agent):
    names = [("a1", "auto", None), ("a2", "auto", None), ("a3", "auto", None)]
    world = build_world(tmp_path, start_agent, names)
    compile_and_deploy(requested_by="ops", strategy=FAST)
    world.publish("web", "1.2.0")
    world.set_faults("a1", unhealthy=True)
    before = {name: len(world.applies(name)) for name, _, _ in names}
    strategy = Strategy(canary="1", batch="1", halt_after="0", retries=0)
    report = compile_and_deploy(requested_by="ops", strategy=strategy)
    assert report["outcomes"] == {"a1": "rolled-back", "a2": "halted", "a3": "halted"}
    assert len(world.applies("a2")) == before["a2"] and len(world.applies("a3")) == before["a3"]
    world.set_faults("a1", unhealthy=False)
    assert world.running("a1") == {"api": "1.1.0", "web": "1.1.0"}
    assert outcome_of("a2") == ["succeeded", "halted"]


def test_first_deploy_that_fails_has_nothing_to_roll_back_to(tmp_path, start_agent):
    world = build_world(tmp_path, start_agent, [("a1", "auto", None)])
    world.set_faults("a1", unhealthy=True)
    report = compile_and_deploy(requested_by="ops", strategy=Strategy(retries=0))
    assert report["outcomes"] == {"a1": "failed"}
    (record,) = deployments.deployments_of("a1")
    assert "rollback failed too" in (record.error or "")


def test_permanent_failure_rolls_back_and_the_rest_continue(tmp_path, start_agent):
    names = [("a1", "auto", None), ("a2", "auto", None), ("a3", "auto", None)]
    world = build_world(tmp_path, start_agent, names)
    compile_and_deploy(requested_by="ops", strategy=FAST)
    assert world.running("a2") == {"api": "1.1.0", "web": "1.1.0"}
    world.publish("api", "1.2.0")
    world.set_faults("a2", unhealthy=True)
    report = compile_and_deploy(requested_by="ops", strategy=FAST)
    assert report["outcomes"] == {"a1": "succeeded", "a2": "rolled-back", "a3": "succeeded"}
    world.set_faults("a2", unhealthy=False)
    assert world.running("a2") == {"api": "1.1.0", "web": "1.1.0"}
    assert world.running("a3")["api"] == "1.2.0"
    assert statuses("a2") == ["deployed", "failed"]


def test_transient_errors_still_converge(tmp_path, start_agent):
    names = [(f"a{i}", "auto", None) for i in range(6)]
    world = build_world(tmp_path, start_agent, names)
    for name, _, _ in names:
        # An attempt is an apply and a health check: at 20% each, 9 attempts all fail
        # for one of 6 instances about once in 2,000 runs (at 30%, once in 70).
        world.set_faults(name, error_rate=0.2, reset_rate=0.0)
    report = compile_and_deploy(requested_by="ops", strategy=FAST)
    assert set(report["outcomes"].values()) == {"succeeded"}, report
    for name, _, _ in names:
        world.set_faults(name, error_rate=0.0)
        assert world.running(name) == {"api": "1.1.0", "web": "1.1.0"}


def test_a_wave_larger_than_the_loop_keeps_in_flight_is_fed_as_deploys_end(
    tmp_path, start_agent, monkeypatch
):
    import flows._rollout

    monkeypatch.setattr(flows._rollout, "DEPLOY_CONCURRENCY", 1)  # 2 in flight at most
    names = [(f"a{i}", "auto", None) for i in range(5)]
    world = build_world(tmp_path, start_agent, names)
    for name, _, _ in names:
        world.set_faults(name, latency_ms=200)
    strategy = FAST.model_copy(update={"batch": "100%"})  # the canary, then a wave of 4
    report = compile_and_deploy(requested_by="ops", strategy=strategy)
    assert report["outcomes"] == {name: "succeeded" for name, _, _ in names}
    applies = [e for name, _, _ in names for e in world.applies(name)]
    edges = sorted(
        [(e["started_at"], 1) for e in applies] + [(e["finished_at"], -1) for e in applies]
    )
    in_flight = list(itertools.accumulate(step for _, step in edges))
    assert max(in_flight) <= 2, edges


def test_two_runs_on_the_same_instances_never_overlap(tmp_path, start_agent):
    names = [("a1", "auto", None), ("a2", "auto", None)]
    world = build_world(tmp_path, start_agent, names)
    for name, _, _ in names:
        world.set_faults(name, latency_ms=300)
    first, box1 = run_in_thread(compile_and_deploy, requested_by="ops", strategy=FAST)
    second, box2 = run_in_thread(compile_and_deploy, requested_by="ops2", strategy=FAST)
    first.join(120)
    second.join(120)
    assert "error" not in box1 and "error" not in box2, (box1, box2)
    for name, _, _ in names:
        log = sorted(world.applies(name), key=lambda e: e["started_at"])
        assert log, name
        for earlier, later in itertools.pairwise(log):
            assert earlier["finished_at"] <= later["started_at"], log


def test_flow_run_history_links_to_fleet_records(tmp_path, start_agent):
    build_world(tmp_path, start_agent, [("a1", "auto", None)])
    compile_and_deploy(requested_by="ops", strategy=FAST)
    (record,) = deployments.deployments_of("a1")
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(record.flow_run_id)
        assert run.name == "compile-and-deploy by ops"
        tasks = client.read_task_runs()
        mine = {t.name: t for t in tasks if str(t.flow_run_id) == record.flow_run_id}
    assert "deploy a1 r1" in mine
    assert "channel:auto" in mine["deploy a1 r1"].tags
    events = [e for e in audit.events() if e.flow_run_id == record.flow_run_id]
    assert {"manifest.compile", "deployment.start", "deployment.succeeded"} <= {
        e.action for e in events
    }


def test_deploy_runs_of_a_channel_share_one_tag_set(tmp_path, start_agent):
    """Prefect starts a concurrency-check thread and client per distinct tag set:
    deploy tags that named the instance grew the flow process with the fleet."""
    build_world(
        tmp_path, start_agent, [("a1", "auto", None), ("a2", "auto", None), ("a3", "auto", None)]
    )
    report = compile_and_deploy(requested_by="ops", strategy=FAST)
    assert set(report["outcomes"].values()) == {"succeeded"}
    (record,) = deployments.deployments_of("a1")
    with get_client(sync_client=True) as client:
        runs = [t for t in client.read_task_runs() if str(t.flow_run_id) == record.flow_run_id]
    deploys = [t for t in runs if t.name.startswith("deploy ")]
    assert sorted(t.name.split()[1] for t in deploys) == ["a1", "a2", "a3"]
    assert len({frozenset(t.tags) for t in deploys}) == 1
