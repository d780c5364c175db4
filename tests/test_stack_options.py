"""`python -m deployments.stack` options: what the command line turns into."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployments.stack import _parse, config_from_json, config_to_json


def test_agents_are_started_unless_no_agents_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEET_HOME", str(tmp_path))
    _, config = _parse(["up"])
    assert config.agents is True
    command, config = _parse(["up", "--no-agents", "--workers", "3"])
    assert (command, config.agents, config.workers) == ("up", False, 3)
    assert config.home == tmp_path.resolve()


def test_flow_runs_start_warm_unless_no_warm_start_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEET_HOME", str(tmp_path))
    assert _parse(["up"])[1].warm_start is True
    _, cold = _parse(["up", "--no-warm-start"])
    assert cold.warm_start is False
    assert config_from_json(config_to_json(cold)) == cold
    # Each worker's socket is short enough for a Unix socket, and the stack's own.
    deep = tmp_path / ("d" * 200)
    monkeypatch.setenv("FLEET_HOME", str(deep))
    deep_config = _parse(["up"])[1]
    socket = deep_config.warm_socket(1)
    assert len(str(socket).encode()) < 108 and socket.name == "worker-2.sock"
    assert socket.parent != cold.warm_socket(1).parent


def test_the_state_file_keeps_the_choice_and_an_older_one_means_agents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEET_HOME", str(tmp_path))
    _, config = _parse(["up", "--no-agents"])
    written = config_to_json(config)
    assert config_from_json(written) == config
    older = {k: v for k, v in written.items() if k != "agents"}
    assert config_from_json(older).agents is True


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["up", "--workers", "0"], "--workers and --worker-limit must be at least 1"),
        (["up", "--name", "no-dashes"], "Invalid --name: 'no-dashes'"),
        (["up", "--server-ports", "4201,x"], "Invalid ports: '4201,x'"),
    ],
)
def test_bad_options_exit_2_naming_the_value(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        _parse(argv)
    assert exited.value.code == 2
    assert said in capsys.readouterr().err
