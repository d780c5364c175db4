"""The scale-out stack, with real processes: rollouts run by both workers and recorded in
Fleet's PostgreSQL; an API server killed, Redis restarted and a worker killed while
rollouts go on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deployments.stack import haproxy_servers, haproxy_stats
from tests.e2e.stack import ROOT
from tests.stack.conftest import AGENTS, FINAL, INSTANCES, MANUAL, RunningStack

pytestmark = pytest.mark.slow


def wait_until(check, what: str, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.2)


def test_one_command_brings_up_every_part(stack: RunningStack) -> None:
    c = stack.config
    children = stack.children()
    expected = {"redis", "haproxy", "prefect-api-1", "prefect-api-2", "prefect-services"}
    expected |= {"worker-1", "worker-2", "warm-1", "warm-2", "fleet-api"}
    expected |= {f"agent-{n}" for n in AGENTS}
    assert set(children) == expected
    # Each worker runs in its own directory; the flows' code comes through the pull step.
    for name in ("worker-1", "worker-2"):
        assert Path(f"/proc/{children[name]}/cwd").resolve() == c.work / "workers" / name
    assert haproxy_servers(c) == {"api-1": "UP", "api-2": "UP"}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FLEET_"))}
    env["FLEET_HOME"] = str(stack.home)
    status = subprocess.run(
        [sys.executable, "-m", "deployments.stack", "status"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0, status.stdout + status.stderr
    assert "Prefect API (load balancer)    ok" in status.stdout
    assert "DOWN" not in status.stdout and "NOT ANSWERING" not in status.stdout
    line = stack.wait_for_output("start-up:")
    print(f"\nstack up in {stack.up_seconds:.1f} s; {line}")


def by_id(item: dict[str, object]) -> str:
    return str(item["id"])


# A deployment's fields that a worker's poll changes between two reads.
POLLED = {"last_polled", "status"}


def unpolled(items: list[dict[str, object]]) -> list[dict[str, object]]:
    """`items` in id order, without what a worker's poll changes."""
    return [{k: v for k, v in item.items() if k not in POLLED} for item in sorted(items, key=by_id)]


def _compressed_bytes(stack: RunningStack) -> int:
    """The bytes HAProxy's backend has compressed so far (its `comp_in` counter)."""
    for row in haproxy_stats(stack.config):
        if row.get("pxname") == "prefect-api" and row.get("svname") == "BACKEND":
            return int(row["comp_in"] or 0)
    raise AssertionError("no backend prefect-api in HAProxy's stats")


def test_the_load_balancer_compresses_and_the_ui_bundles_are_kept(stack: RunningStack) -> None:
    """HAProxy compresses responses and the API servers do not (they would gzip at level 9
    in Python); the UI's content-hashed bundles may be kept by the browser for a year."""
    import re

    import httpx

    c = stack.config
    gzip = {"Accept-Encoding": "gzip"}
    page = httpx.get(f"{c.prefect_url}/", headers=gzip, timeout=30)
    assert page.status_code == 200
    assert page.headers.get("content-encoding") == "gzip"
    assert "immutable" not in page.headers.get("cache-control", "")  # the page itself may change
    bundle = re.search(r'src="(/assets/[^"]+\.js)"', page.text)
    assert bundle is not None, page.text[:500]
    compressed_before = _compressed_bytes(stack)
    asset = httpx.get(f"{c.prefect_url}{bundle.group(1)}", headers=gzip, timeout=30)
    assert asset.status_code == 200
    assert asset.headers.get("content-encoding") == "gzip"
    # HAProxy compressed it, so the server sent it plain: the server was not asked for gzip.
    assert _compressed_bytes(stack) - compressed_before >= len(asset.content)
    assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
    api = httpx.post(f"{c.prefect_url}/api/deployments/filter", json={}, headers=gzip, timeout=30)
    assert api.status_code == 200 and api.json()
    assert api.headers.get("content-encoding") == "gzip"
    # Behind the load balancer, a server asked without Accept-Encoding answers plain.
    direct = httpx.post(
        f"{c.server_url(0)}/api/deployments/filter",
        json={},
        headers={"Accept-Encoding": "identity"},
        timeout=30,
    )
    assert direct.status_code == 200 and "content-encoding" not in direct.headers
    # The same answer (in no set order: the filter asks for none), but for when the
    # workers last polled, which they may do between the two reads.
    assert unpolled(direct.json()) == unpolled(api.json())


def test_rollouts_are_run_by_both_workers_and_recorded_in_fleets_postgres(
    stack: RunningStack,
) -> None:
    version = stack.release("api")
    stack.slow_agents(300)  # each run lasts a few seconds: the runs overlap
    try:
        pairs = [INSTANCES[i : i + 2] for i in range(0, len(INSTANCES), 2)]
        runs = {stack.rollout(pair): pair for pair in pairs}
        for run_id in runs:
            assert stack.wait_state(run_id, FINAL)["state_type"] == "COMPLETED"
    finally:
        stack.slow_agents(0)
    assert {stack.worker_of(r) for r in runs} == {"worker-1", "worker-2"}
    # Each run's process was forked by its worker's warm starter (deployments.warmstart),
    # not started as a new interpreter.
    for run_id in runs:
        worker = stack.worker_of(run_id)
        assert worker is not None
        logs = stack.config.work / "logs"
        warm_log = (logs / f"warm-{worker.removeprefix('worker-')}.log").read_text()
        assert f"for flow run {run_id}" in warm_log, warm_log[-2000:]
        assert "starting the flow run cold" not in (logs / f"{worker}.log").read_text()
    for run_id, pair in runs.items():
        assert stack.deployments_of(run_id) == {n: "succeeded" for n in pair}
        # Task-run states reach Prefect's database through its event pipeline, a
        # moment after the flow run ends.
        wait_until(
            lambda r=run_id, p=pair: stack.deploy_task_runs(r) == {n: "COMPLETED" for n in p},
            f"the deploy task runs of {run_id}",
            30,
        )
        for name in pair:
            assert stack.running_instances(name)["api"] == version
    # The manifests the runs deployed are recorded as deployed in Fleet's database.
    rows = stack.fleet_sql(
        "SELECT DISTINCT instance FROM manifest"
        " WHERE status = 'deployed' AND flow_run_id = ANY(%s)",
        list(runs),
    )
    assert sorted(r[0] for r in rows) == INSTANCES


def test_a_rollout_completes_through_the_other_api_server_when_one_is_killed(
    stack: RunningStack,
) -> None:
    version = stack.release("api")
    stack.slow_agents(700)
    try:
        run_id = stack.rollout(INSTANCES)
        stack.wait_state(run_id, {"RUNNING"}, timeout=120)
        wait_until(lambda: stack.deploy_task_runs(run_id), "a deploy task run", 60)
        victim = stack.children()["prefect-api-1"]
        os.kill(victim, signal.SIGKILL)
        # The load balancer notices and sends everything to the other server.
        wait_until(lambda: haproxy_servers(stack.config).get("api-1") == "DOWN", "api-1 down", 10)
        assert haproxy_servers(stack.config)["api-2"] == "UP"
        final = stack.wait_state(run_id, FINAL, timeout=240)
    finally:
        stack.slow_agents(0)
    assert final["state_type"] == "COMPLETED", final
    assert stack.deployments_of(run_id) == {n: "succeeded" for n in INSTANCES}
    wait_until(
        lambda: stack.deploy_task_runs(run_id) == {n: "COMPLETED" for n in INSTANCES},
        f"the deploy task runs of {run_id}",
        30,
    )
    assert all(stack.running_instances(n)["api"] == version for n in INSTANCES)
    # The supervisor restarted the killed server; the load balancer takes it back.
    stack.wait_for_output("prefect-api-1 exited with code -9")
    stack.wait_for_output("prefect-api-1 restarted")
    wait_until(lambda: haproxy_servers(stack.config).get("api-1") == "UP", "api-1 back", 90)


def test_redis_restarted_mid_rollout_loses_no_task_run_and_leaks_no_lease(
    stack: RunningStack,
) -> None:
    version = stack.release("api")
    stack.slow_agents(700)
    try:
        run_id = stack.rollout(INSTANCES)
        stack.wait_state(run_id, {"RUNNING"}, timeout=120)
        wait_until(lambda: stack.deploy_task_runs(run_id), "a deploy task run", 60)
        os.kill(stack.children()["redis"], signal.SIGKILL)
        stack.wait_for_output("redis restarted", timeout=30)
        final = stack.wait_state(run_id, FINAL, timeout=240)
    finally:
        stack.slow_agents(0)
    assert final["state_type"] == "COMPLETED", final
    assert stack.deployments_of(run_id) == {n: "succeeded" for n in INSTANCES}
    assert all(stack.running_instances(n)["api"] == version for n in INSTANCES)
    # Every task run of the rollout reached Prefect's database, in its final state.
    wait_until(
        lambda: stack.deploy_task_runs(run_id) == {n: "COMPLETED" for n in INSTANCES},
        f"the deploy task runs of {run_id}: {stack.deploy_task_runs(run_id)}",
        30,
    )
    states = {t["name"]: t["state_type"] for t in stack.task_runs(run_id)}
    assert set(states.values()) == {"COMPLETED"}, states
    # No instance lock stays taken, and no lease in Redis holds a slot of any limit.
    # (A task run's tag check takes a lease on no limit when no tag is limited;
    # one whose release met Redis down stays, holding nothing.)
    assert stack.live_locks() == {}
    assert [lease for lease in stack.redis_leases() if lease.get("resource_ids")] == []


def test_a_worker_killed_mid_rollout_crashes_its_run_recovery_runs_and_a_rollout_converges(
    stack: RunningStack,
) -> None:
    version = stack.release("api")
    stack.slow_agents(700)
    try:
        run_id = stack.rollout(INSTANCES)
        stack.wait_state(run_id, {"RUNNING"}, timeout=120)
        wait_until(lambda: stack.deploy_task_runs(run_id), "a deploy task run", 60)
        worker = stack.worker_of(run_id)
        assert worker is not None
        os.kill(stack.children()[worker], signal.SIGKILL)
        # The flow run's process (in a session of its own) sees its worker gone and ends
        # the run as Crashed at once: it is not left Running.
        crashed = stack.wait_state(run_id, FINAL, timeout=60)
        stack.wait_for_output(f"{worker} exited with code -9")
        stack.wait_for_output(f"{worker} restarted", timeout=30)
    finally:
        stack.slow_agents(0)
    assert crashed["state_type"] == "CRASHED", crashed
    interrupted = stack.deployments_of(run_id)
    print(f"\nkilled {worker}: run {crashed['state']['message']!r}; Fleet's records {interrupted}")
    assert len(interrupted) < len(INSTANCES)  # it died before the end
    # fleet setup's automation starts the recover flow for the crashed run; it leaves no
    # deploy of the dead run open in Fleet's records.
    recover = stack.wait_for_run("recover/fleet", {"flow_run_id": run_id}, timeout=90)
    assert stack.wait_state(recover, FINAL, timeout=150)["state_type"] == "COMPLETED"
    assert "running" not in stack.deployments_of(run_id).values()
    # Its instance locks come back (released on the way out, or when their leases end).
    wait_until(lambda: stack.live_locks() == {}, "locks released", 120)
    # A new rollout of the same instances, taken by a worker, deploys what is missing.
    again = stack.rollout(INSTANCES)
    assert stack.wait_state(again, FINAL, timeout=180)["state_type"] == "COMPLETED"
    assert all(stack.running_instances(n)["api"] == version for n in INSTANCES)
    redeployed = stack.deployments_of(again)
    assert set(redeployed.values()) <= {"succeeded"}
    done_before = {n for n, o in interrupted.items() if o == "succeeded"}
    assert set(redeployed) == set(INSTANCES) - done_before


def test_a_run_suspended_for_approval_is_resumed_on_the_other_worker(
    stack: RunningStack,
) -> None:
    version = stack.release("api")
    run_id = stack.rollout([MANUAL])
    stack.wait_state(run_id, {"PAUSED"}, timeout=120)
    first = stack.worker_of(run_id)
    assert first is not None
    (planned,) = stack.fleet_sql(
        "SELECT number FROM manifest WHERE instance = %s AND flow_run_id = %s", MANUAL, run_id
    )
    # The worker that ran it stops taking runs: the resumed run goes to the other one.
    paused = stack.children()[first]
    os.kill(paused, signal.SIGSTOP)
    try:
        decided = stack.call("POST", f"/approvals/{run_id}", as_="approver", json={"comment": "ok"})
        assert decided["instances"] == [MANUAL] and decided["verified"] is True
        final = stack.wait_state(run_id, FINAL, timeout=180)
    finally:
        os.kill(paused, signal.SIGCONT)
    assert final["state_type"] == "COMPLETED", final
    assert sorted(stack.workers_of(run_id)) == ["worker-1", "worker-2"]
    # It deployed the revision that was planned and approved, read back from the results
    # the first worker stored: the resumed run did not plan again.
    assert stack.fleet_sql(
        "SELECT manifest_number, outcome FROM deployment WHERE flow_run_id = %s", run_id
    ) == [(planned[0], "succeeded")]
    assert stack.fleet_sql(
        "SELECT count(*) FROM manifest WHERE instance = %s AND flow_run_id = %s", MANUAL, run_id
    ) == [(1,)]
    assert stack.running_instances(MANUAL)["api"] == version
