"""A big wave's instances are deployed in chunks, one deploy task run per chunk,
with per-instance records, log lines, halt and outcomes kept by Fleet."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.task_runners import ThreadPoolTaskRunner

from blocks.targets import save_host_targets
from fleet.agent.client import AgentClient
from fleet.services import deployments, rollouts
from flows._rollout import Rollout, Strategy, chunk_size
from flows.compile_and_deploy import compile_and_deploy
from tasks.deploying import InstanceOutcome
from tasks.reporting import Progress
from tests.flows.support import COMPONENTS, build_world

pytestmark = pytest.mark.usefixtures("prefect_server", "fleet_db")

COUNT = 40  # a wave of 40 goes in chunks of 2
HOSTED = [f"h-{i:04d}" for i in range(1, COUNT + 1)]


@flow(task_runner=ThreadPoolTaskRunner(max_workers=1))  # type: ignore[arg-type]
def one_chunk_at_a_time(instances: list[str], strategy: Strategy) -> list[InstanceOutcome]:
    prepared = rollouts.prepare_rollout(actor="ops", instances=instances)
    done: list[InstanceOutcome] = []
    Rollout(strategy, actor="ops", progress=Progress(len(prepared.specs)), done=done)(
        list(prepared.specs)
    )
    return done


def test_a_big_wave_goes_in_chunks_and_a_failure_halts_the_rest_of_its_chunk(
    tmp_path: Path, start_agent
) -> None:
    assert chunk_size(COUNT) == 2
    world = build_world(tmp_path, start_agent, [])
    host = start_agent(
        "--instance-count", str(COUNT), "--instance-prefix", "h", root=tmp_path / "h"
    )
    save_host_targets(host.url, host.token, HOSTED, timeout=30, overwrite=True)
    for name in HOSTED:
        world.data["instances"].append(
            {
                "name": name,
                "customer": name,
                "channel": "auto",
                "target": name,
                "current": dict.fromkeys(COMPONENTS, "1.0.0"),
            }
        )
    world.apply()

    report = compile_and_deploy(
        requested_by="ops",
        strategy=Strategy(
            canary="0", batch="100%", halt_after="100%", retries=2, retry_delay_seconds=0.05
        ),
    )
    assert report["outcomes"] == dict.fromkeys(HOSTED, "succeeded")
    (record,) = deployments.deployments_of(HOSTED[0])
    run_id = record.flow_run_id
    deadline = time.monotonic() + 30  # the server records the last states a moment later
    while True:
        with get_client(sync_client=True) as client:
            runs = [t for t in client.read_task_runs(limit=200) if str(t.flow_run_id) == run_id]
        deploys = [t for t in runs if t.name.startswith("deploy ")]
        if all(t.state and t.state.is_completed() for t in deploys) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    names = sorted(t.name for t in deploys)
    assert len(names) == COUNT // 2
    assert names[0] == "deploy h-0001 … h-0002 (2 instances)"
    assert all(t.state and t.state.is_completed() for t in deploys)
    # Every instance has its own record in the run, found by name.
    assert len(deployments.deployments_of_run(run_id)) == COUNT
    (one,) = deployments.deployments_of_run(run_id, instance="h-0037")
    assert one.outcome == "succeeded"
    with AgentClient(host.url, host.token, instance="h-0037") as client:
        assert client.state().components == {"api": "1.1.0", "web": "1.1.0"}

    # The first instance of the first chunk fails: its chunk's second one and every
    # other chunk never start (one task run at a time, halt after the first failure).
    world.data["instances"][0]["target"] = "no-such-block"
    world.apply()
    world.publish("web", "1.2.0")
    strategy = Strategy(canary="0", batch="100%", halt_after="0", retries=0)
    done = {o.instance: o.outcome for o in one_chunk_at_a_time(HOSTED, strategy)}
    assert done == {"h-0001": "failed", **dict.fromkeys(HOSTED[1:], "halted")}
    with AgentClient(host.url, host.token, instance="h-0002") as client:
        assert client.state().components["web"] == "1.1.0"  # never touched
    assert deployments.deployments_of("h-0002")[-1].outcome == "halted"
