"""A rollout through the target blocks of an agent host's instances, beside a single agent."""

from __future__ import annotations

from pathlib import Path

import pytest

from blocks.targets import save_host_targets
from fleet.agent.client import AgentClient
from fleet.services import deployments
from flows.compile_and_deploy import compile_and_deploy
from tests.flows.runs import FAST
from tests.flows.support import COMPONENTS, build_world

pytestmark = pytest.mark.usefixtures("prefect_server", "fleet_db")

HOSTED = ["hosted-a", "hosted-b", "hosted-c"]


def test_a_rollout_deploys_a_hosts_instances_and_rolls_back_only_the_one_that_fails(
    tmp_path: Path, start_agent
) -> None:
    world = build_world(tmp_path, start_agent, [("solo", "auto", None)])  # one agent, as today
    host = start_agent(*[arg for n in HOSTED for arg in ("--instance", n)], root=tmp_path / "host")
    save_host_targets(host.url, host.token, HOSTED, timeout=30, overwrite=True)
    for name in HOSTED:
        world.data["instances"].append(
            {
                "name": name,
                "customer": name.title(),
                "channel": "auto",
                "target": name,
                "current": {c: "1.0.0" for c in COMPONENTS},
            }
        )
    world.apply()

    def running(name: str) -> dict[str, str]:
        with AgentClient(host.url, host.token, instance=name) as client:
            return client.state().components

    report = compile_and_deploy(requested_by="ops", strategy=FAST)
    assert report["outcomes"] == {name: "succeeded" for name in ["solo", *HOSTED]}
    for name in HOSTED:
        assert running(name) == {"api": "1.1.0", "web": "1.1.0"}
    assert world.running("solo") == {"api": "1.1.0", "web": "1.1.0"}

    # One instance of the host cannot write its release; the others go on.
    world.publish("api", "1.2.0")
    staging = host.root / "instances" / "hosted-b" / "staging"
    staging.rmdir()
    staging.write_text("not a directory")
    report = compile_and_deploy(requested_by="ops", strategy=FAST)
    assert report["outcomes"] == {
        "solo": "succeeded",
        "hosted-a": "succeeded",
        "hosted-b": "rolled-back",
        "hosted-c": "succeeded",
    }
    failed = deployments.deployments_of("hosted-b")[-1]
    assert "Cannot write the release" in (failed.error or "")
    assert "nothing to undo" in (failed.error or "")
    assert running("hosted-b") == {"api": "1.1.0", "web": "1.1.0"}
    assert running("hosted-a")["api"] == running("hosted-c")["api"] == "1.2.0"
