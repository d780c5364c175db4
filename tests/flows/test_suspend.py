"""An approval from a deployment run suspends the run (no process waits) and the
resumed run re-executes from the top without doing anything twice."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.flow_runs import resume_flow_run
from prefect.settings import PREFECT_API_URL

from fleet.services import audit, deployments, manifests
from tests.flows.support import build_world

pytestmark = pytest.mark.usefixtures("prefect_server", "fleet_db")

ROOT = Path(__file__).resolve().parents[2]
SERVE = (
    "from flows.compile_and_deploy import compile_and_deploy\n"
    "compile_and_deploy.serve(name='suspend-test', limit=4)\n"
)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_suspended_run_resumes_from_the_top_without_repeating_itself(tmp_path, start_agent):
    world = build_world(tmp_path, start_agent, [("m1", "manual", None)], approvals_required=1)
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": str(ROOT)}
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-c", SERVE], cwd=ROOT, env=env, stdout=log, stderr=log
    )
    try:
        with get_client(sync_client=True) as client:

            def deployment_ready():
                try:
                    return client.read_deployment_by_name("compile-and-deploy/suspend-test")
                except Exception:
                    return None

            wait_for(deployment_ready, 60, "the served deployment")
            run = run_deployment(
                "compile-and-deploy/suspend-test",
                parameters={
                    "requested_by": "alice",
                    "strategy": {"retries": 2, "retry_delay_seconds": 0.1},
                },
                timeout=0,
            )
            suspended = wait_for(
                lambda: (s := client.read_flow_run(run.id).state) and s.name == "Suspended" and s,
                120,
                "the run to suspend for approval",
            )
            assert suspended.is_paused()
            assert world.applies("m1") == []
            resume_flow_run(run.id, run_input={"decision": "approve", "approver": "bob"})
            final = wait_for(
                lambda: (s := client.read_flow_run(run.id).state) and s.is_final() and s,
                120,
                "the resumed run to finish",
            )
            assert final.is_completed(), final
    finally:
        server.terminate()
        server.wait(30)
        log.close()
    assert world.running("m1") == {"api": "1.1.0", "web": "1.1.0"}
    run_id = str(run.id)
    assert [a.approver for a in deployments.approvals_for("m1", flow_run_id=run_id)] == ["bob"]
    assert [d.outcome for d in deployments.deployments_of("m1")] == ["succeeded"]
    assert [h.revision.status.value for h in manifests.history("m1")] == ["deployed"]
    compiles = [e for e in audit.events() if e.action == "manifest.compile"]
    assert len(compiles) == 1  # the plan was not compiled again on resume


def test_a_suspended_run_replays_codes_and_early_deploys_without_repeating_them(
    tmp_path, start_agent
):
    """Each instance deploys when its own approval is complete, and a one-time code
    read again by the replayed run is recognised, not refused as spent."""
    from fleet.services import approvals, codes, runs
    from fleet.services.tokens import Principal, Role, create_token

    world = build_world(
        tmp_path,
        start_agent,
        [("m1", "manual", None), ("m2", "manual", None)],
        approvals_required=1,
    )
    world.data["channels"][1]["verified_approvals"] = True
    world.apply()
    create_token("bob", "approver", actor="tests")
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": str(ROOT)}
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-c", SERVE.replace("suspend-test", "suspend-codes")],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=log,
    )
    try:
        with get_client(sync_client=True) as client:

            def state():
                return client.read_flow_run(run.id).state

            wait_for(
                lambda: _deployment(client, "compile-and-deploy/suspend-codes"),
                60,
                "the served deployment",
            )
            run = run_deployment(
                "compile-and-deploy/suspend-codes",
                parameters={"requested_by": "alice", "strategy": {"retry_delay_seconds": 0.1}},
                timeout=0,
            )
            wait_for(lambda: (s := state()) and s.name == "Suspended", 120, "the first suspension")
            code = codes.issue_code(str(run.id), principal=Principal("bob", Role.APPROVER)).code
            resume_flow_run(run.id, run_input={"code": code, "instances": ["m1"]})
            wait_for(
                lambda: (
                    (s := state())
                    and s.name == "Suspended"
                    and s.state_details.pause_key == "approval-2"
                ),
                120,
                "the run to deploy m1 and suspend again",
            )
            assert world.running("m1") == {"api": "1.1.0", "web": "1.1.0"}
            assert world.applies("m2") == []
            runs.decide(str(run.id), approver="bob", decision="approve", instances=["m2"])
            final = wait_for(lambda: (s := state()) and s.is_final() and s, 120, "the end")
            assert final.is_completed(), final
    finally:
        server.terminate()
        server.wait(30)
        log.close()
    run_id = str(run.id)
    assert world.running("m2") == {"api": "1.1.0", "web": "1.1.0"}
    assert len(world.applies("m1")) == 1  # deployed once, though the run replayed twice
    assert [(a.instance, a.approver, a.verified) for a in approvals.given(run_id)] == [
        ("m1", "bob", True),
        ("m2", "bob", True),
    ]
    events = [e for e in audit.events() if e.flow_run_id == run_id]
    assert [e.action for e in events].count("approval.code.spend") == 1
    assert not [e for e in events if e.action == "approval.refused"]
    assert sorted(
        (d.instance, d.outcome) for n in ("m1", "m2") for d in deployments.deployments_of(n)
    ) == [
        ("m1", "succeeded"),
        ("m2", "succeeded"),
    ]


def _deployment(client, name):
    try:
        return client.read_deployment_by_name(name)
    except Exception:
        return None
