"""Deploy targets as Prefect blocks: described fields, secrets kept secret, one interface."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import BlockDocumentCreate
from pydantic import SecretStr

from blocks import BLOCK_TYPES, CommandTarget, FleetAgent, LocalTarget, load_target
from blocks.targets import load_target_blocks
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
    on_host = FleetAgent(base_url="http://127.0.0.1:1/", token=SecretStr("x"), instance="acme")
    assert agent.instance is None and on_host.instance == "acme"
    assert FleetAgent(base_url="http://h", token=SecretStr("x"), instance="").instance is None
    clients: list[Target] = [
        agent.get_client(),
        on_host.get_client(),
        CommandTarget(apply_command="true", environment={"A": "1"}).get_client(),
        LocalTarget(root=str(tmp_path), keep=2).get_client(),
    ]
    assert isinstance(clients[0], AgentClient) and clients[0].base_url == "http://127.0.0.1:1"
    assert clients[0].instance is None
    assert isinstance(clients[1], AgentClient) and clients[1].instance == "acme"
    assert isinstance(clients[2], CommandRunner) and clients[2].env == {"A": "1"}
    assert isinstance(clients[3], Installation) and clients[3].keep == 2
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


@pytest.mark.usefixtures("prefect_server")
def test_host_blocks_in_bulk_reach_their_instances_and_todays_blocks_still_work(
    capsys: pytest.CaptureFixture[str],
    start_agent: Callable[..., AgentProcess],
    refs: dict[str, ArtifactRef],
    tmp_path: Path,
) -> None:
    host = start_agent("--instance-count", "3", "--instance-prefix", "bulk", root=tmp_path / "h")
    names = ["bulk-0001", "bulk-0002", "bulk-0003"]
    add = ["blocks", "add-host", host.url, "--token-file", str(host.token_file)]
    assert main(add) == 0  # no instance options: the host says which it serves
    assert "3 instances of" in (out := capsys.readouterr().out) and "3 created" in out

    blocks = load_target_blocks([*names, "bulk-0004"])
    assert sorted(blocks) == names
    for name in names:
        block = blocks[name]
        assert isinstance(block, FleetAgent) and block.instance == name
        assert block.base_url == host.url and block.token.get_secret_value() == TOKEN
        loaded = FleetAgent.load(name)  # as Prefect loads it
        assert all(getattr(block, f) == getattr(loaded, f) for f in FleetAgent.model_fields)
    second = load_target("bulk-0002")
    assert isinstance(second, AgentClient) and second.instance == "bulk-0002"
    manifest = make_manifest(refs, {"api": "1.0.0"}, instance="bulk-0002")
    assert second.apply(manifest).changed
    second.close()
    with AgentClient(host.url, TOKEN, instance="bulk-0001") as first:
        assert first.state().manifest_hash is None  # the other instances are untouched

    assert main(add) == 0  # again: nothing to do
    assert "0 created, 0 updated, 3 unchanged" in capsys.readouterr().out

    # Other settings under the same names: refused whole unless overwriting.
    other = tmp_path / "other-token"
    other.write_text("another-token\n")
    changed = ["blocks", "add-host", host.url, "--token-file", str(other)]
    changed += ["--instance-count", "4", "--instance-prefix", "bulk"]
    assert main(changed) == 2
    err = capsys.readouterr().err
    assert "3 FleetAgent blocks exist with other settings (bulk-0001, bulk-0002, bulk-0003)" in err
    assert "nothing was saved" in err
    assert sorted(load_target_blocks([*names, "bulk-0004"])) == names
    assert main([*changed, "--overwrite"]) == 0
    assert "1 created, 3 updated, 0 unchanged" in capsys.readouterr().out
    updated = load_target_blocks(["bulk-0003", "bulk-0004"])
    for block in updated.values():
        assert isinstance(block, FleetAgent)
        assert block.token.get_secret_value() == "another-token"

    # A document saved before blocks had `instance` reaches its single-instance agent.
    single = start_agent()
    with get_client(sync_client=True) as client:
        schema = client.read_block_document_by_name("bulk-0001", "fleet-agent")
        client.create_block_document(
            BlockDocumentCreate(
                name="todays-agent",
                data={"base_url": single.url, "token": TOKEN, "timeout": 30.0},
                block_schema_id=schema.block_schema_id,
                block_type_id=schema.block_type_id,
            )
        )
    today = load_target("todays-agent")
    assert isinstance(today, AgentClient) and today.instance is None
    assert today.apply(make_manifest(refs, {"api": "1.0.0"})).changed
    assert today.state().manifest_hash is not None
    today.close()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--instance", "Bad"], "Invalid instance name: 'Bad'"),
        (["--instance-count", "-2"], "--instance-count must be 0-100000, got -2"),
        (["--timeout", "nan"], "--timeout must be a positive number, got nan"),
        (["--timeout", "0"], "--timeout must be a positive number, got 0.0"),
    ],
)
def test_add_host_refuses_bad_options_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    token = tmp_path / "token"
    token.write_text("tok")
    argv = ["blocks", "add-host", "http://127.0.0.1:9", "--token-file", str(token), *extra]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("url", ["127.0.0.1:8700", "ftp://host", "http://", ""])
def test_add_host_refuses_a_url_that_is_not_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str
) -> None:
    token = tmp_path / "token"
    token.write_text("tok")
    assert main(["blocks", "add-host", url, "--token-file", str(token)]) == 2
    assert f"Invalid host URL: {url!r}" in capsys.readouterr().err


def test_add_host_says_when_the_host_cannot_be_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = tmp_path / "token"
    token.write_text("tok")
    assert main(["blocks", "add-host", "http://127.0.0.1:9", "--token-file", str(token)]) == 1
    err = capsys.readouterr().err
    assert "GET http://127.0.0.1:9/v1/instances" in err and "Traceback" not in err
