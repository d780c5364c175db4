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
