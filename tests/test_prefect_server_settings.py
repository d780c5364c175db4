"""Fleet's Prefect server settings are real Prefect settings, applied by the main job."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.settings import Settings

from deployments.demo import Demo, DemoConfig
from deployments.prefect_server import SERVER_SETTINGS, server_env


def test_every_setting_is_read_by_prefect_with_the_value_fleet_sets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in SERVER_SETTINGS.items():
        monkeypatch.setenv(name, value)
    services = Settings().server.services
    assert services.task_run_recorder.batch_size == 100
    assert services.task_run_recorder.flush_interval == 1
    assert services.event_persister.batch_size == 200
    assert services.event_persister.flush_interval == 1
    assert Settings().server.analytics_enabled is False


def test_defaults_differ_from_prefects_so_each_setting_changes_something() -> None:
    defaults = Settings().server.services
    assert defaults.task_run_recorder.batch_size != 100
    assert defaults.event_persister.batch_size != 200


def test_an_operators_own_value_stands() -> None:
    env = server_env({"PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": "50", "X": "1"})
    assert env["PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE"] == "50"
    assert env["PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE"] == "100"
    assert env["X"] == "1"


def test_the_main_job_starts_its_server_with_them(tmp_path: Path) -> None:
    config = DemoConfig(
        home=tmp_path, fleet_file=tmp_path / "f.yaml", prefect_port=1, api_port=2, agent_port_base=3
    )
    env = Demo(config).env()
    for name, value in SERVER_SETTINGS.items():
        assert env[name] == value


def test_the_operator_guide_lists_each_batching_setting() -> None:
    guide = (Path(__file__).resolve().parent.parent / "docs" / "operator-guide.md").read_text()
    for name, value in SERVER_SETTINGS.items():
        if "ANALYTICS" not in name:
            assert f"export {name}={value}" in guide
