"""Instance locks in a real rollout: a wave is not held hostage by one locked
instance, and re-runs converge (a revision deploys once, a dead run's deploy is
settled by the next one), on a real Prefect server with real agents."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prefect import flow
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from fleet.agent.client import AgentClient
from fleet.agent.models import Manifest
from fleet.services import audit, deployments, locks, rollouts
from fleet.services.drift import recorded_manifests
from flows._rollout import Rollout, Strategy
from tasks.deploying import InstanceOutcome
from tasks.reporting import Progress
from tests.flows.support import build_world

pytestmark = pytest.mark.usefixtures("prefect_server", "fleet_db")

QUICK = Strategy(canary="0", batch="100%", halt_after="100%", retries=0, lock_timeout_seconds=2)


@flow(task_runner=ThreadPoolTaskRunner(max_workers=4))  # type: ignore[arg-type]
def roll(instances: list[str], strategy: Strategy) -> dict[str, tuple[str, str]]:
    prepared = rollouts.prepare_rollout(actor="ops", instances=instances)
    done: list[InstanceOutcome] = []
    Rollout(strategy, actor="ops", progress=Progress(len(prepared.specs)), done=done)(
        list(prepared.specs)
    )
    return {o.instance: (o.outcome, o.detail) for o in done}


@flow
def roll_specs(specs: list[rollouts.DeploySpec], strategy: Strategy) -> dict[str, str]:
    done: list[InstanceOutcome] = []
    Rollout(strategy, actor="ops", progress=Progress(len(specs)), done=done)(specs)
    return {o.instance: o.outcome for o in done} | {"_run": str(flow_run.id)}


def test_an_instance_another_run_holds_is_reported_and_the_wave_goes_on(tmp_path, start_agent):
    world = build_world(tmp_path, start_agent, [("a1", "auto", None), ("a2", "auto", None)])
    held = locks.take("a1", run="other-run", holder="elsewhere:1", lease=timedelta(minutes=10))
    outcomes = roll(["a1", "a2"], QUICK)
    assert outcomes["a2"][0] == "succeeded"  # not held hostage by a1
    outcome, detail = outcomes["a1"]
    assert outcome == "locked" and "held by run other-run (elsewhere:1)" in detail
    assert world.applies("a1") == []
    (record,) = deployments.deployments_of("a1")
    assert record.outcome == "locked" and "other-run" in (record.error or "")
    assert [lease.run for lease in locks.held()] == [held.run]  # ours released, theirs kept


def test_two_runs_for_one_revision_deploy_it_once(tmp_path, start_agent):
    world = build_world(tmp_path, start_agent, [("a1", "auto", None)])
    prepared = rollouts.prepare_rollout(actor="ops", instances=["a1"])
    (spec,) = prepared.specs
    first = roll_specs([spec], QUICK)
    second = roll_specs([spec], QUICK)  # a second run, waiting for the same revision
    assert first["a1"] == "succeeded" and second["a1"] == "already-deployed"
    assert len(world.applies("a1")) == 1
    records = {d.flow_run_id: d for d in deployments.deployments_of("a1")}
    assert records[first["_run"]].outcome == "succeeded"
    assert records[second["_run"]].outcome == "already-deployed"
    (now,) = recorded_manifests(["a1"])
    assert now.revision == spec.revision  # never marked failed
    assert locks.held() == []


def test_a_deploy_a_dead_run_left_open_is_settled_by_the_next_deploy(tmp_path, start_agent):
    world = build_world(tmp_path, start_agent, [("a1", "auto", None)])
    prepared = rollouts.prepare_rollout(actor="ops", instances=["a1"])
    (spec,) = prepared.specs
    # A run that applied the revision and died before recording it (no lock left).
    rollouts.record_started(spec, flow_run_id="dead-run", actor="ops")
    agent = world.agents["a1"]
    with AgentClient(agent.url, agent.token) as client:
        client.apply(Manifest.model_validate(dict(spec.manifest)))
    outcome = roll_specs([spec], QUICK)
    assert outcome["a1"] == "already-deployed"
    assert len(world.applies("a1")) == 1  # applied once, by the dead run
    records = {d.flow_run_id: d.outcome for d in deployments.deployments_of("a1")}
    assert records["dead-run"] == "interrupted"
    (now,) = recorded_manifests(["a1"])
    assert (now.revision, now.hash) == (spec.revision, spec.manifest_hash)
    assert any(e.action == "recovery.settled" for e in audit.events())
    assert audit.verify().ok
