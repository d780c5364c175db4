"""A big wave's instances are deployed in chunks, one deploy task run per chunk,
with per-instance records, log lines, halt and outcomes kept by Fleet."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.runtime import flow_run
from prefect.settings import PREFECT_API_URL
from prefect.task_runners import ThreadPoolTaskRunner
from sqlalchemy import delete
from sqlalchemy.exc import OperationalError

import tasks.deploying
from blocks.targets import load_target_blocks, save_host_targets
from fleet.agent.client import AgentClient
from fleet.core.errors import NotFoundError
from fleet.db.engine import get_engine
from fleet.db.history import MANIFEST
from fleet.services import audit, deployments, locks, recovery, rollouts
from fleet.services.drift import recorded_manifests
from flows._rollout import Rollout, Strategy, chunk_size
from flows.compile_and_deploy import compile_and_deploy
from flows.recover import recover
from tasks.deploying import InstanceOutcome, Watch, chunk_label, deploy_instances, watch
from tasks.reporting import Progress
from tests.flows.support import COMPONENTS, build_world

pytestmark = pytest.mark.usefixtures("prefect_server", "fleet_db")

ROOT = Path(__file__).resolve().parents[2]

COUNT = 40  # a wave of 40 goes in chunks of 2
HOSTED = [f"h-{i:04d}" for i in range(1, COUNT + 1)]


def hosted_world(tmp_path: Path, start_agent, prefix: str, names: list[str]) -> tuple[Any, Any]:  # type: ignore[no-untyped-def]
    """A world whose instances `names` (`<prefix>-0001`...) are served by one agent host."""
    world = build_world(tmp_path, start_agent, [])
    host = start_agent(
        "--instance-count", str(len(names)), "--instance-prefix", prefix, root=tmp_path / prefix
    )
    save_host_targets(host.url, host.token, names, timeout=30, overwrite=True)
    for name in names:
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
    return world, host


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
    world, host = hosted_world(tmp_path, start_agent, "h", HOSTED)

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


# A chunk's records: its free locks taken and records opened together, its ends
# recorded together, an instance another run holds deployed last, alone.

SMALL = [f"c-{i:04d}" for i in range(1, 6)]


@flow
def one_chunk(
    instances: list[str], watcher: Callable[[Watch, str], None] | None = None
) -> list[InstanceOutcome]:
    """`instances` deployed by one deploy task run, as a chunk of a big wave is."""
    specs = list(rollouts.prepare_rollout(actor="ops", instances=instances).specs)
    blocks = load_target_blocks(sorted(s.target for s in specs if s.target))
    run_id = str(flow_run.id)
    kept = watch(run_id)  # held here: the registry holds it weakly
    if watcher is not None:
        watcher(kept, run_id)
    return deploy_instances(
        specs,
        [blocks.get(s.target) if s.target else None for s in specs],
        label=chunk_label(specs),
        actor="ops",
        retries=0,
        lock_timeout=90,
    )


@pytest.fixture
def small(tmp_path: Path, start_agent) -> Iterator[tuple[Any, Any]]:
    yield hosted_world(tmp_path, start_agent, "c", SMALL)


def _runs_web(host: Any, name: str) -> str:
    with AgentClient(host.url, host.token, instance=name) as client:
        return str(client.state().components.get("web"))


def _latest(name: str) -> str:
    return deployments.deployments_of(name)[-1].outcome


def test_a_chunk_deploys_an_instance_another_run_holds_last_holding_no_other_lock(
    small: tuple[Any, Any],
) -> None:
    _, host = small
    held_by_other = SMALL[1]
    locks.take(held_by_other, run="another-run")
    others = [n for n in SMALL if n != held_by_other]
    seen: dict[str, object] = {}

    def let_go() -> None:
        # The other run lets go only once every other instance of the chunk is
        # recorded and its lock released: a chunk that waited holding them never ends.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            mine = [lease for lease in locks.held() if lease.run != "another-run"]
            if all(deployments.deployments_of(n) for n in others) and not mine:
                seen["recorded"] = {n: _latest(n) for n in others}
                seen["held"] = [lease.instance for lease in locks.held()]
                locks.release(held_by_other, run="another-run")
                return
            time.sleep(0.05)

    releaser = threading.Thread(target=let_go)
    releaser.start()
    done = one_chunk(SMALL)
    releaser.join()
    assert [o.instance for o in done] == SMALL  # in the chunk's order
    assert {o.instance: o.outcome for o in done} == dict.fromkeys(SMALL, "succeeded")
    assert seen == {"recorded": dict.fromkeys(others, "succeeded"), "held": [held_by_other]}
    assert locks.held() == []
    assert all(_runs_web(host, n) == "1.1.0" for n in SMALL)


def test_a_halt_within_a_chunk_closes_the_records_it_opened_as_halted(
    small: tuple[Any, Any],
) -> None:
    _, host = small

    def halt_after_the_first(kept: Watch, run_id: str) -> None:
        kept.count = lambda outcome: kept.halt.set()

    done = one_chunk(SMALL, halt_after_the_first)
    assert {o.instance: o.outcome for o in done} == {
        SMALL[0]: "succeeded",
        **dict.fromkeys(SMALL[1:], "halted"),
    }
    run_id = deployments.deployments_of(SMALL[0])[-1].flow_run_id
    records = {d.instance: d for d in deployments.deployments_of_run(run_id)}
    assert {n: r.outcome for n, r in records.items()} == {o.instance: o.outcome for o in done}
    assert all(r.finished_at is not None for r in records.values())
    assert locks.held() == []
    # The halted ones were never touched (they run nothing yet).
    assert [_runs_web(host, n) for n in SMALL] == ["1.1.0"] + ["None"] * (len(SMALL) - 1)


def test_an_end_refused_at_the_chunk_s_record_is_reported_and_the_others_are_recorded(
    small: tuple[Any, Any],
) -> None:
    """Its record was closed by another run meanwhile (as recovery closes one whose
    lease ran out): the chunk's ends are then recorded one by one."""

    def closed_behind_its_back(kept: Watch, run_id: str) -> None:
        def count(outcome: InstanceOutcome) -> None:
            if outcome.instance == SMALL[2]:
                deployments.finish_deployment(
                    SMALL[2], flow_run_id=run_id, outcome="interrupted", actor="recovery"
                )

        kept.count = count

    done = one_chunk(SMALL, closed_behind_its_back)
    assert {o.instance: o.outcome for o in done} == dict.fromkeys(SMALL, "succeeded")
    run_id = deployments.deployments_of(SMALL[0])[-1].flow_run_id
    records = {d.instance: d.outcome for d in deployments.deployments_of_run(run_id)}
    assert records == {**dict.fromkeys(SMALL, "succeeded"), SMALL[2]: "interrupted"}
    assert locks.held() == []


def test_a_run_killed_mid_chunk_leaves_every_record_the_chunk_opened_and_recovery_converges(
    tmp_path: Path, start_agent
) -> None:
    """The flow's process SIGKILLed while the third instance of a chunk of five
    applies: two applied and not recorded, three not reached, all five records
    open and locked. Recovery records what each target runs; a rollout converges."""
    names = [f"k{i}" for i in range(1, 6)]
    world = build_world(tmp_path, start_agent, [(n, "auto", None) for n in names])
    world.set_faults("k3", latency_ms=6_000)  # its apply is held up
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    code = f"from tests.flows.test_chunks import one_chunk; one_chunk({names!r})"
    process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 120
        while world.running("k2").get("api") != "1.1.0":
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(0.5)  # k3's apply is under way
    finally:
        process.kill()
        process.wait()
    run_id = deployments.deployments_of("k1")[-1].flow_run_id
    records = {d.instance: d.outcome for d in deployments.deployments_of_run(run_id)}
    assert records == dict.fromkeys(names, "running")  # the chunk opened them all
    assert {lease.instance for lease in locks.held() if lease.run == run_id} == set(names)
    world.set_faults("k3")  # its agent answers again

    locks.release_run(run_id, actor="recovery", reason="the test killed it")
    state = recover(run_id, wait_for_leases=False, return_state=True)
    assert state.is_completed()
    records = {d.instance: d.outcome for d in deployments.deployments_of_run(run_id)}
    assert records == dict.fromkeys(names, "interrupted")
    recorded = {m.instance: m.versions.get("api") for m in recorded_manifests(names)}
    assert recorded["k1"] == recorded["k2"] == "1.1.0"
    assert recorded["k4"] == recorded["k5"] == "1.0.0"  # never reached: as they were
    assert [world.running(n).get("api") for n in ("k1", "k2")] == ["1.1.0", "1.1.0"]
    # k3 is recorded running the new revision exactly when its apply got through.
    assert (recorded["k3"] == "1.1.0") == (world.running("k3").get("api") == "1.1.0")

    report = compile_and_deploy(requested_by="ops", strategy=Strategy(canary="0", batch="100%"))
    assert set(report["outcomes"].values()) <= {"succeeded", "already-deployed"}
    assert all(world.running(n)["api"] == "1.1.0" for n in names)
    assert locks.held() == [] and recovery.orphans() == []
    assert audit.verify().ok


def test_a_chunk_records_an_end_other_than_success_as_it_happens(
    small: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only successes wait for the chunk's end (recovery can tell them from the
    target); a failure is recorded, and its lock released, before it is counted."""
    monkeypatch.setattr(tasks.deploying, "RECORD_SUCCESSES_EVERY", 600.0)
    _, host = small
    dead = SMALL[2]
    save_host_targets("http://127.0.0.1:9", host.token, [dead], timeout=2, overwrite=True)
    seen: dict[str, tuple[str, bool]] = {}

    def snapshot(kept: Watch, run_id: str) -> None:
        def count(outcome: InstanceOutcome) -> None:
            (record,) = deployments.deployments_of_run(run_id, instance=outcome.instance)
            locked = any(lease.instance == outcome.instance for lease in locks.held())
            seen[outcome.instance] = (record.outcome, locked)

        kept.count = count

    done = one_chunk(SMALL, snapshot)
    assert {o.instance: o.outcome for o in done} == {
        **dict.fromkeys(SMALL, "succeeded"),
        dead: "failed",
    }
    # As each was counted: the failure recorded and unlocked, the successes not yet.
    assert seen == {**dict.fromkeys(SMALL, ("running", True)), dead: ("failed", False)}
    assert locks.held() == []


@flow(task_runner=ThreadPoolTaskRunner(max_workers=2))  # type: ignore[arg-type]
def rolled(instances: list[str]) -> tuple[dict[str, str], int, int]:
    """A rollout of `instances`: outcomes, and the deploys started and failed as counted."""
    prepared = rollouts.prepare_rollout(actor="ops", instances=instances)
    done: list[InstanceOutcome] = []
    strategy = Strategy(canary="0", batch="100%", halt_after="100%", retries=0)
    run = Rollout(strategy, actor="ops", progress=Progress(len(prepared.specs)), done=done)
    run(list(prepared.specs))
    return {o.instance: o.outcome for o in done}, run.started, run.failed


def test_a_deploy_task_that_fails_after_its_deploys_ended_counts_none_twice(
    small: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chunk's successes could not be recorded (the database went away as the
    task ended): the rollout records them from what each deploy ended with, and
    counts none of them again."""
    refused = {"left": 1}
    real = rollouts.record_ended

    def once_refused(*args: Any, **kwargs: Any) -> None:
        if refused["left"]:
            refused["left"] -= 1
            raise OperationalError("COMMIT", {}, Exception("the database went away"))
        real(*args, **kwargs)

    monkeypatch.setattr(rollouts, "record_ended", once_refused)
    outcomes, started, failed = rolled(SMALL)
    assert refused["left"] == 0
    assert outcomes == dict.fromkeys(SMALL, "succeeded")
    assert (started, failed) == (len(SMALL), 0)
    run_id = deployments.deployments_of(SMALL[0])[-1].flow_run_id
    records = {d.instance: d.outcome for d in deployments.deployments_of_run(run_id)}
    assert records == dict.fromkeys(SMALL, "succeeded")
    assert all(rollouts.running_revision(n) == 1 for n in SMALL)
    assert locks.held() == []


def test_a_chunk_whose_locks_cannot_be_taken_together_deploys_each_alone(
    small: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = {"left": 1}
    real = rollouts.begin_many_in

    def once_refused(*args: Any, **kwargs: Any) -> Any:
        if refused["left"]:
            refused["left"] -= 1
            raise NotFoundError("Unknown manifest revision: one of the chunk's")
        return real(*args, **kwargs)

    monkeypatch.setattr(rollouts, "begin_many_in", once_refused)
    done = one_chunk(SMALL)
    assert refused["left"] == 0
    assert {o.instance: o.outcome for o in done} == dict.fromkeys(SMALL, "succeeded")
    assert locks.held() == []


def test_a_chunk_with_a_revision_gone_deploys_the_others_and_reports_it(
    small: tuple[Any, Any],
) -> None:
    gone = SMALL[1]

    def remove_its_revision(kept: Watch, run_id: str) -> None:
        with get_engine().begin() as connection:
            connection.execute(delete(MANIFEST).where(MANIFEST.c.instance == gone))

    done = {o.instance: o for o in one_chunk(SMALL, remove_its_revision)}
    assert {n: o.outcome for n, o in done.items()} == {
        **dict.fromkeys(SMALL, "succeeded"),
        gone: "failed",
    }
    assert "Unknown manifest revision" in done[gone].detail
    assert "not recorded" in done[gone].detail
    assert deployments.deployments_of(gone) == []
    assert locks.held() == []


def test_a_chunk_s_successes_wait_no_longer_than_its_interval(
    small: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Installs slower than the interval are recorded one by one: each success is
    recorded, and its lock released, before the next deploy is counted."""
    monkeypatch.setattr(tasks.deploying, "RECORD_SUCCESSES_EVERY", 0.0)
    seen: dict[str, tuple[str, bool]] = {}

    def snapshot(kept: Watch, run_id: str) -> None:
        def count(outcome: InstanceOutcome) -> None:
            before = SMALL[SMALL.index(outcome.instance) - 1]
            if before != SMALL[-1]:
                (record,) = deployments.deployments_of_run(run_id, instance=before)
                locked = any(lease.instance == before for lease in locks.held())
                seen[before] = (record.outcome, locked)

        kept.count = count

    done = one_chunk(SMALL, snapshot)
    assert {o.instance: o.outcome for o in done} == dict.fromkeys(SMALL, "succeeded")
    assert seen == dict.fromkeys(SMALL[:-1], ("succeeded", False))
    assert locks.held() == []
