"""The halt threshold stops a rollout within a wave: deploys not started are not started."""

from __future__ import annotations

import pytest
from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from fleet.services import deployments, rollouts
from flows._rollout import Rollout, Strategy
from tasks.deploying import InstanceOutcome, ensure_instance_locks
from tasks.reporting import Progress
from tests.flows.support import build_world

pytestmark = pytest.mark.usefixtures("prefect_server", "fleet_db")


# One deploy at a time, so that the rest of the wave waits in the task runner
# while the first one fails (the rollout flows run 16 at once).
@flow(task_runner=ThreadPoolTaskRunner(max_workers=1))  # type: ignore[arg-type]
def one_at_a_time(instances: list[str], strategy: Strategy) -> list[InstanceOutcome]:
    prepared = rollouts.prepare_rollout(actor="ops", instances=instances)
    ensure_instance_locks(instances)
    done: list[InstanceOutcome] = []
    Rollout(strategy, actor="ops", progress=Progress(len(prepared.specs)), done=done)(
        list(prepared.specs)
    )
    return done


@pytest.mark.parametrize("halt_after", ["0", "10%"])
def test_one_failure_halts_the_rest_of_its_wave(tmp_path, start_agent, halt_after):
    """Seen: with a 25% batch and `halt_after 0`, one failure did not stop its wave."""
    names = [(f"a{i}", "auto", None) for i in range(1, 6)]
    world = build_world(tmp_path, start_agent, names)
    world.data["instances"][0]["target"] = "no-such-block"  # a1 fails at once
    world.apply()
    strategy = Strategy(canary="0", batch="100%", halt_after=halt_after, retries=0)

    done = one_at_a_time([n for n, _, _ in names], strategy)

    outcomes = {o.instance: o.outcome for o in done}
    assert outcomes == {
        "a1": "failed",
        "a2": "halted",
        "a3": "halted",
        "a4": "halted",
        "a5": "halted",
    }
    for name in ("a2", "a3", "a4", "a5"):
        assert world.applies(name) == [], name  # never touched
        (record,) = deployments.deployments_of(name)
        assert (record.outcome, record.error) == ("halted", "rollout halted")


def test_below_the_threshold_the_wave_goes_on(tmp_path, start_agent):
    names = [(f"a{i}", "auto", None) for i in range(1, 5)]
    world = build_world(tmp_path, start_agent, names)
    world.data["instances"][0]["target"] = "no-such-block"
    world.apply()
    strategy = Strategy(canary="0", batch="100%", halt_after="1", retries=0)

    done = one_at_a_time([n for n, _, _ in names], strategy)

    assert {o.instance: o.outcome for o in done} == {
        "a1": "failed",
        "a2": "succeeded",
        "a3": "succeeded",
        "a4": "succeeded",
    }
