"""The halt threshold stops a rollout within a wave: deploys not started are not started."""

from __future__ import annotations

import pytest
from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from fleet.services import deployments, rollouts
from flows._rollout import Rollout, Strategy
from tasks.deploying import InstanceOutcome
from tasks.reporting import Progress
from tests.flows.support import build_world

pytestmark = pytest.mark.usefixtures("prefect_server", "fleet_db")


# One deploy at a time, so that the rest of the wave waits in the task runner
# while the first one fails (the rollout flows run 16 at once).
@flow(task_runner=ThreadPoolTaskRunner(max_workers=1))  # type: ignore[arg-type]
def one_at_a_time(instances: list[str], strategy: Strategy) -> list[InstanceOutcome]:
    prepared = rollouts.prepare_rollout(actor="ops", instances=instances)
    done: list[InstanceOutcome] = []
    Rollout(strategy, actor="ops", progress=Progress(len(prepared.specs)), done=done)(
        list(prepared.specs)
    )
    return done


def test_one_failure_halts_the_rest_of_its_wave(tmp_path, start_agent):
    """Seen: with a 25% batch and `halt_after 0`, one failure did not stop its wave."""
    names = [(f"a{i}", "auto", None) for i in range(1, 6)]
    instances = [n for n, _, _ in names]
    world = build_world(tmp_path, start_agent, names)
    world.data["instances"][0]["target"] = "no-such-block"  # a1 fails at once
    world.apply()

    def wave(halt_after: str) -> dict[str, str]:
        strategy = Strategy(canary="0", batch="100%", halt_after=halt_after, retries=0)
        return {o.instance: o.outcome for o in one_at_a_time(instances, strategy)}

    # Below the threshold the wave goes on.
    assert wave("1") == {"a1": "failed", **{n: "succeeded" for n in instances[1:]}}
    world.publish("web", "1.2.0")
    for halt_after in ("0", "10%"):  # 1 of 5 started is 20%: past 10%
        applied = {n: len(world.applies(n)) for n in instances}
        assert wave(halt_after) == {"a1": "failed", **{n: "halted" for n in instances[1:]}}
        assert {n: len(world.applies(n)) for n in instances} == applied  # never touched
        for name in instances[1:]:
            record = deployments.deployments_of(name)[-1]
            assert (record.outcome, record.error) == ("halted", "rollout halted")
