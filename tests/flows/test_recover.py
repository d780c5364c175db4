"""Recovery reads an orphan's target before closing it: the recover flow leaves an
orphan whose target cannot be read now open and tries it again later, and a run
that still cannot read it ends Failed naming it, for the next deploy or recover run
to settle. Real agents (injected 503s), a real Prefect server, a temporary Fleet
database."""

from __future__ import annotations

import random
from pathlib import Path

import httpx
import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
)

import flows.recover
import tasks.recovery
from fleet.agent.client import AgentClient
from fleet.agent.errors import Unauthorized
from fleet.agent.models import Manifest
from fleet.services import audit, deployments, recovery, rollouts
from fleet.services.drift import recorded_manifests
from fleet.services.recovery import Settled
from flows._rollout import Rollout, Strategy
from flows.recover import RecoveryIncomplete, recover
from tasks.deploying import InstanceOutcome
from tasks.recovery import (
    SETTLE_RETRIES,
    TargetNotRead,
    _retry_unread,
    settle,
    settle_orphan,
)
from tasks.reporting import Progress
from tests.flows.support import World, build_world

pytestmark = pytest.mark.usefixtures("prefect_server", "fleet_db")

DEAD = "dead-run"
QUICK = Strategy(canary="0", batch="100%", halt_after="100%", retries=0, lock_timeout_seconds=2)
READS = 2  # reads of the target per settle try, in these tests


@pytest.fixture(autouse=True)
def quick_tries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reads and tries seconds apart: fractions of a second here."""
    monkeypatch.setattr(tasks.recovery, "READ_ATTEMPTS", READS)
    monkeypatch.setattr(tasks.recovery, "READ_DELAY", 0.05)
    quick = settle_orphan.with_options(retry_delay_seconds=[0.2] * SETTLE_RETRIES)
    monkeypatch.setattr(flows.recover, "settle_orphan", quick)


def orphaned(
    tmp_path: Path, start_agent, names: tuple[str, ...] = ("a1",)
) -> tuple[World, dict[str, rollouts.DeploySpec]]:
    """Instances whose new revision a run applied and died before recording (its lock
    gone): each has an orphaned deployment record, and its agent runs the revision."""
    world = build_world(tmp_path, start_agent, [(name, "auto", None) for name in names])
    prepared = rollouts.prepare_rollout(actor="ops", instances=list(names))
    specs = {s.instance: s for s in prepared.specs}
    for name in names:
        spec = specs[name]
        rollouts.record_started(spec, flow_run_id=DEAD, actor="ops")
        agent = world.agents[name]
        with AgentClient(agent.url, agent.token) as client:
            client.apply(Manifest.model_validate(dict(spec.manifest)))
    assert sorted(o.instance for o in recovery.orphans()) == sorted(names)
    return world, specs


def failing_first(reads: int) -> int:
    """A fault seed with which an agent at `error_rate=0.5` answers its first `reads`
    requests 503 and the next one: the fault middleware draws one number a request."""
    for seed in range(1000):
        rng = random.Random(seed)
        draws = [rng.random() for _ in range(reads + 1)]
        if all(d < 0.5 for d in draws[:-1]) and draws[-1] >= 0.5:
            return seed
    raise AssertionError("no such seed")


@flow
def settling(instance: str, url: str, token: str, run: str, close_unread: bool) -> Settled:
    (orphan,) = recovery.orphans(instances=[instance])
    with AgentClient(url, token) as target:
        return settle(orphan, target, flow_run_id=run, close_unread=close_unread)


@flow
def roll_specs(specs: list[rollouts.DeploySpec], strategy: Strategy) -> dict[str, str]:
    done: list[InstanceOutcome] = []
    Rollout(strategy, actor="ops", progress=Progress(len(specs)), done=done)(specs)
    return {o.instance: o.outcome for o in done}


def actions_of(run: str) -> list[str]:
    return [e.action for e in audit.events() if e.flow_run_id == run]


def recovery_artifact(flow_run_id: str) -> str:
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["fleet-recovery"])),
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
        )
    return str(artifact.data)


def test_an_orphan_whose_target_cannot_be_read_stays_open_unless_a_deploy_settles_it(
    tmp_path, start_agent
):
    world, specs = orphaned(tmp_path, start_agent)
    agent = world.agents["a1"]
    world.set_faults("a1", error_rate=1.0)  # every read answered 503
    (before,) = recorded_manifests(["a1"])

    # The recover flow's settle: nothing closed, nothing recorded.
    with pytest.raises(TargetNotRead, match=r"a1: could not read its target.*HTTP 503"):
        settling("a1", agent.url, agent.token, "recover-run", close_unread=False)
    assert [(o.instance, o.flow_run_id) for o in recovery.orphans()] == [("a1", DEAD)]
    (record,) = deployments.deployments_of("a1")
    assert record.finished_at is None
    assert actions_of("recover-run") == []

    # A deploy's settle: closed interrupted, nothing recorded as running.
    settled = settling("a1", agent.url, agent.token, "deploy-run", close_unread=True)
    assert (settled.action, settled.observed_hash) == ("unchanged", None)
    assert recovery.orphans() == []
    (record,) = deployments.deployments_of("a1")
    assert record.outcome == "interrupted" and record.finished_at is not None
    (after,) = recorded_manifests(["a1"])
    assert after.revision == before.revision != specs["a1"].revision
    assert actions_of("deploy-run") == ["deployment.interrupted"]
    assert audit.verify().ok


def test_an_orphan_whose_target_runs_its_revision_is_closed_and_the_revision_recorded(
    tmp_path, start_agent
):
    world, specs = orphaned(tmp_path, start_agent)
    agent, spec = world.agents["a1"], specs["a1"]
    settled = settling("a1", agent.url, agent.token, "recover-run", close_unread=False)
    assert (settled.action, settled.observed_hash) == ("recorded-running", spec.manifest_hash)
    assert recovery.orphans() == []
    (record,) = deployments.deployments_of("a1")
    assert record.outcome == "interrupted"
    (now,) = recorded_manifests(["a1"])
    assert (now.revision, now.hash) == (spec.revision, spec.manifest_hash)
    assert actions_of("recover-run") == [
        "deployment.interrupted",
        "manifest.deployed",
        "recovery.settled",
    ]
    assert audit.verify().ok


def test_the_recover_flow_settles_an_orphan_whose_target_answers_on_a_later_try(
    tmp_path, start_agent
):
    world, specs = orphaned(tmp_path, start_agent)
    spec = specs["a1"]
    # The first try's reads are all answered 503 (TargetNotRead); the retry's first is not.
    world.set_faults("a1", error_rate=0.5, seed=failing_first(READS))
    state = recover(wait_for_leases=False, return_state=True)
    assert state.is_completed(), state.message
    (item,) = state.result()["recovered"]
    assert (item["instance"], item["flow_run_id"]) == ("a1", DEAD)
    assert (item["action"], item["observed_hash"]) == ("recorded-running", spec.manifest_hash)
    assert recovery.orphans() == []
    (record,) = deployments.deployments_of("a1")
    assert record.outcome == "interrupted"
    (now,) = recorded_manifests(["a1"])
    assert (now.revision, now.hash) == (spec.revision, spec.manifest_hash)
    artifact = recovery_artifact(str(state.state_details.flow_run_id))
    assert f"a1 r{spec.revision}" in artifact and "**recorded-running**" in artifact
    assert "left open" not in artifact
    assert audit.verify().ok


@pytest.mark.parametrize("later", ["deploy", "recover"])
def test_an_orphan_still_unread_after_the_tries_is_left_open_and_settled_later(
    tmp_path, start_agent, later
):
    world, specs = orphaned(tmp_path, start_agent, ("a1", "a2"))
    spec = specs["a1"]
    world.set_faults("a1", error_rate=1.0)  # a1 never answers; a2 does
    state = recover(wait_for_leases=False, return_state=True)
    assert state.is_failed()
    assert "1 orphaned deploy(s) left open" in (state.message or "")
    assert f"a1 r{spec.revision}: run {DEAD}" in (state.message or "")
    assert "a2" not in (state.message or "")
    with pytest.raises(RecoveryIncomplete):
        state.result()
    artifact = recovery_artifact(str(state.state_details.flow_run_id))
    assert f"- a1 r{spec.revision}: run {DEAD}" in artifact
    assert "**left open**" in artifact and "TargetNotRead" in artifact
    assert f"- a2 r{specs['a2'].revision}: run {DEAD}" in artifact
    assert "**recorded-running**" in artifact
    # a1's record is still open, and nothing was recorded for it; a2 is settled.
    assert [(o.instance, o.flow_run_id) for o in recovery.orphans()] == [("a1", DEAD)]
    (record,) = deployments.deployments_of("a1")
    assert record.finished_at is None
    (a2,) = recorded_manifests(["a2"])
    assert a2.revision == specs["a2"].revision

    world.set_faults("a1")  # a1 answers again
    if later == "deploy":
        assert roll_specs([spec], QUICK) == {"a1": "already-deployed"}
        assert len(world.applies("a1")) == 1  # applied once, by the dead run
    else:
        again = recover(wait_for_leases=False, return_state=True)
        assert again.is_completed(), again.message
        (item,) = again.result()["recovered"]
        assert (item["instance"], item["action"]) == ("a1", "recorded-running")
    assert recovery.orphans() == []
    records = {d.flow_run_id: d.outcome for d in deployments.deployments_of("a1")}
    assert records[DEAD] == "interrupted"
    (now,) = recorded_manifests(["a1"])
    assert (now.revision, now.hash) == (spec.revision, spec.manifest_hash)
    assert audit.verify().ok


@pytest.mark.parametrize("refusal", ["wrong token", "no block"])
def test_an_orphan_whose_target_refuses_for_good_is_closed_recording_nothing(
    tmp_path, start_agent, refusal
):
    world, specs = orphaned(tmp_path, start_agent)
    if refusal == "wrong token":
        from blocks.targets import FleetAgent

        FleetAgent(base_url=world.agents["a1"].url, token="wrong", timeout=30).save(
            "a1", overwrite=True
        )
    else:
        world.data["instances"][0]["target"] = "no-such-target"
        world.apply()
    (before,) = recorded_manifests(["a1"])
    state = recover(wait_for_leases=False, return_state=True)
    assert state.is_completed(), state.message
    (item,) = state.result()["recovered"]
    assert (item["action"], item["observed_hash"]) == ("unchanged", None)
    assert recovery.orphans() == []
    (record,) = deployments.deployments_of("a1")
    assert record.outcome == "interrupted"
    (after,) = recorded_manifests(["a1"])
    assert after.revision == before.revision != specs["a1"].revision


@pytest.mark.parametrize(
    ("error", "tries"),
    [
        (TargetNotRead("a1: could not read its target"), 3),
        (httpx.ConnectError("the Prefect server does not answer"), 3),
        (Unauthorized("wrong token"), 1),
        (ValueError("a bug"), 1),
    ],
    ids=["not-read", "not-loaded", "refused", "bug"],
)
def test_a_settle_is_tried_again_only_when_its_target_could_not_be_read_or_loaded(error, tries):
    """`_retry_unread` as Prefect's task engine calls it: with the failed state it
    builds from the exception."""
    assert settle_orphan.retry_condition_fn is _retry_unread
    assert settle_orphan.retries == SETTLE_RETRIES
    calls: list[int] = []

    @task(retries=2, retry_delay_seconds=0, retry_condition_fn=_retry_unread)
    def failing() -> None:
        calls.append(1)
        raise error

    @flow
    def trying() -> bool:
        return failing(return_state=True).is_failed()

    assert trying()
    assert len(calls) == tries


@flow
def settling_found(orphan: recovery.Orphan, url: str, token: str, run: str) -> Settled:
    with AgentClient(url, token) as target:
        return settle(orphan, target, flow_run_id=run, close_unread=False)


def test_an_orphan_closed_meanwhile_is_left_to_whoever_closed_it(tmp_path, start_agent):
    """Whoever closes an orphan records what runs: a settle that finds it closed
    since it was found (a deploy under the instance's lock settled it, and may
    have applied a newer revision since) records nothing from its older read."""
    world, specs = orphaned(tmp_path, start_agent)
    (orphan,) = recovery.orphans(instances=["a1"])
    assert recovery.close_orphan(orphan, actor="recovery", flow_run_id="a-deploy")
    agent = world.agents["a1"]
    settled = settling_found(orphan, agent.url, agent.token, "late-recover")
    assert settled.action == "closed-meanwhile"
    assert settled.observed_hash == specs["a1"].manifest_hash  # it did read the target
    (a1,) = recorded_manifests(["a1"])
    assert a1.revision != specs["a1"].revision  # nothing recorded from the late read
    assert actions_of("late-recover") == []
    assert audit.verify().ok
