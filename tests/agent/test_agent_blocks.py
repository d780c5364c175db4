"""Deploy targets as Prefect blocks: described fields, secrets kept secret, one interface."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import SecretStr

from blocks import BLOCK_TYPES, CommandTarget, FleetAgent, LocalTarget, load_target
from fleet.agent.client import AgentClient
from fleet.agent.command import CommandRunner
from fleet.agent.installation import Installation
from fleet.agent.target import Target
from fleet.artifacts import ArtifactRef
from fleet.cli.main import main
from fleet.core.errors import NotFoundError
from tests.agent.support import TOKEN, AgentProcess, make_manifest


@pytest.mark.parametrize("block_type", BLOCK_TYPES, ids=lambda t: t.__name__)
def test_every_field_is_described(block_type: type) -> None:
    fields = block_type.model_fields
    assert fields
    for name, field in fields.items():
        assert field.description, f"{block_type.__name__}.{name} has no description"


def test_secrets_are_secret_str_and_never_shown() -> None:
    block = FleetAgent(base_url="http://127.0.0.1:1", token=SecretStr("s3cret-value"))
    assert isinstance(block.token, SecretStr)
    assert "s3cret-value" not in repr(block) and "s3cret-value" not in str(block.model_dump())
    cmd = CommandTarget(apply_command="true", secret_environment={"KUBE_TOKEN": "k-secret"})
    assert "k-secret" not in repr(cmd)
    assert cmd.get_client().env["KUBE_TOKEN"] == "k-secret"


def test_each_block_gives_a_target(tmp_path: Path) -> None:
    agent = FleetAgent(base_url="http://127.0.0.1:1/", token=SecretStr("x"), timeout=2)
    clients: list[Target] = [
        agent.get_client(),
        CommandTarget(apply_command="true", environment={"A": "1"}).get_client(),
        LocalTarget(root=str(tmp_path), keep=2).get_client(),
    ]
    assert isinstance(clients[0], AgentClient) and clients[0].base_url == "http://127.0.0.1:1"
    assert isinstance(clients[1], CommandRunner) and clients[1].env == {"A": "1"}
    assert isinstance(clients[2], Installation) and clients[2].keep == 2
    assert all(isinstance(c, Target) for c in clients)


@pytest.mark.usefixtures("prefect_server")
def test_register_then_load_targets_by_document_name(
    capsys: pytest.CaptureFixture[str],
    start_agent: Callable[..., AgentProcess],
    refs: dict[str, ArtifactRef],
    tmp_path: Path,
) -> None:
    assert main(["blocks", "register"]) == 0
    out = capsys.readouterr().out
    for slug in ("fleet-agent", "fleet-command-target", "fleet-local-target"):
        assert f"registered block type {slug}" in out

    agent = start_agent()
    FleetAgent(base_url=agent.url, token=SecretStr(TOKEN), timeout=30).save("acme-prod")
    LocalTarget(root=str(tmp_path / "local")).save("globex-eu")

    remote = load_target("acme-prod")
    assert isinstance(remote, AgentClient)
    manifest = make_manifest(refs, {"api": "1.0.0"})
    assert remote.apply(manifest).changed
    assert remote.state().manifest_hash == manifest.manifest_hash
    remote.close()

    local = load_target("globex-eu")
    assert isinstance(local, Installation)
    assert local.apply(manifest).changed

    with pytest.raises(NotFoundError, match="No target block named 'nobody'"):
        load_target("nobody")
    CommandTarget(apply_command="true").save("acme-prod")
    first = load_target("acme-prod")  # the agent document comes first in BLOCK_TYPES
    assert isinstance(first, AgentClient)
    first.close()
