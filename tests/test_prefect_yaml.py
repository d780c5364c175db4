"""prefect.yaml: every deployment is well formed, its entrypoint imports, and it
matches what `fleet serve` serves; `prefect deploy --all` works against a server;
`fleet setup` twice changes nothing the second time."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.exceptions import ParameterTypeError
from prefect.flows import load_flow_from_entrypoint

from deployments.catalog import FLOWS, TIMEZONE, WORK_POOL, load_flow
from deployments.serve import runner_deployments
from deployments.setup import setup
from fleet.settings import get_settings

ROOT = Path(__file__).resolve().parent.parent
NAMES = {
    "compile-and-deploy",
    "patch-rollout",
    "rollback",
    "compliance-scan",
    "auto-update",
    "drift-check",
    "recover",
}


def project() -> dict:
    return yaml.safe_load((ROOT / "prefect.yaml").read_text())


def test_every_deployment_is_loaded_and_its_entrypoint_imported():
    data = project()
    assert "definitions" in data
    deployments = data["deployments"]
    assert len(deployments) == len(NAMES)
    by_entrypoint = {e.entrypoint: e for e in FLOWS}
    seen = set()
    for deployment in deployments:
        assert deployment["name"] == "fleet"
        assert deployment["work_pool"]["name"] == WORK_POOL
        entry = deployment["entrypoint"]
        path, _, _ = entry.partition(":")
        assert (ROOT / path).is_file() and path.startswith("flows/")
        flow = load_flow_from_entrypoint(str(ROOT / entry))
        seen.add(flow.name)
        catalog = by_entrypoint[entry]
        assert catalog.name == flow.name and load_flow(catalog) is not None
        assert deployment["parameters"] == catalog.parameters
        crons = [s["cron"] for s in deployment["schedules"]]
        assert crons == ([catalog.cron] if catalog.cron else [])
        assert all(s["timezone"] == TIMEZONE for s in deployment["schedules"])
        # the defaults are real parameters of the flow
        assert set(deployment["parameters"]) <= set(flow.parameters.properties)
        try:
            flow.validate_parameters(dict(deployment["parameters"]))
        except ParameterTypeError as exc:  # a parameter each run must give (rollback's reason)
            assert "Field required" in str(exc), exc
    assert seen == NAMES
    schedules = {d["entrypoint"].split(":")[1]: d["schedules"] for d in deployments}
    assert schedules["compliance_scan"][0]["cron"] == "0 * * * *"
    assert schedules["auto_update"][0]["cron"] == "*/15 * * * *"
    assert schedules["drift_check"][0]["cron"].endswith("* * * *")


def test_serve_offers_the_same_deployments():
    served = {d.flow_name: d for d in runner_deployments()}
    assert set(served) == NAMES
    for entry in FLOWS:
        d = served[entry.name]
        assert d.name == "fleet" and d.parameters == entry.parameters
        crons = [s.schedule.cron for s in d.schedules or []]
        assert crons == ([entry.cron] if entry.cron else [])


@pytest.mark.usefixtures("prefect_server")
def test_setup_twice_changes_nothing_the_second_time():
    first = setup(instances=["acme-prod", "globex-eu"], pool_limit=4)
    kinds = {s.kind for s in first}
    assert kinds == {"work pool", "concurrency limit", "block type", "automation"}
    second = setup(instances=["acme-prod", "globex-eu"], pool_limit=4)
    assert {s.action for s in second} <= {"unchanged", "skipped"}, second
    with get_client(sync_client=True) as client:
        pool = client.read_work_pool(WORK_POOL)
        assert (pool.type, pool.concurrency_limit) == ("process", 4)
        limit = client.read_global_concurrency_limit_by_name("fleet-instance-acme-prod")
        assert limit.limit == 1


@pytest.mark.usefixtures("prefect_server")
def test_setup_with_a_notification_block_adds_the_approval_automation_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.blocks.notifications import SlackWebhook

    with warnings.catch_warnings():
        # apprise, behind Prefect's notification blocks, imports the deprecated imghdr
        warnings.simplefilter("ignore", DeprecationWarning)
        block = SlackWebhook(url="https://hooks.slack.invalid/services/T/B/X")
    block.save("fleet-ops", overwrite=True)
    first = setup(notification_block="slack-webhook/fleet-ops")
    assert first[-1].kind == "automation" and first[-1].action in ("created", "unchanged")
    second = setup(notification_block="slack-webhook/fleet-ops")
    assert {s.action for s in second} <= {"unchanged", "skipped"}, second
    with get_client(sync_client=True) as client:
        (automation,) = client.read_automations_by_name("fleet: run waiting for approval")
        assert "prefect.flow-run.Paused" in automation.trigger.expect  # type: ignore[union-attr]
        assert "console" not in automation.actions[0].body  # type: ignore[union-attr]
    # Once the console's address is known, the notification links to the run there.
    monkeypatch.setenv("FLEET_CONSOLE_URL", "https://fleet.example")
    get_settings.cache_clear()
    try:
        third = setup(notification_block="slack-webhook/fleet-ops")
    finally:
        monkeypatch.delenv("FLEET_CONSOLE_URL")
        get_settings.cache_clear()
    assert third[-1].action == "updated"
    with get_client(sync_client=True) as client:
        (automation,) = client.read_automations_by_name("fleet: run waiting for approval")
        body = automation.actions[0].body  # type: ignore[union-attr]
        assert "https://fleet.example/console/approvals/{{ flow_run.id }}" in body


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_server")
def test_prefect_deploy_all_works_from_the_repository_root():
    setup()
    env = dict(os.environ)
    from prefect.settings import PREFECT_API_URL

    env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
    prefect = Path(sys.executable).with_name("prefect")
    done = subprocess.run(
        [str(prefect), "--no-prompt", "deploy", "--all"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with get_client(sync_client=True) as client:
        for name in NAMES:
            deployment = client.read_deployment_by_name(f"{name}/fleet")
            assert deployment.work_pool_name == WORK_POOL
        scan = client.read_deployment_by_name("compliance-scan/fleet")
        assert [s.schedule.cron for s in scan.schedules] == ["0 * * * *"]  # type: ignore[union-attr]
        assert scan.parameters == {"enforce": True}


@pytest.mark.usefixtures("prefect_server")
def test_fleet_setup_command_twice_reports_nothing_changed(capsys):
    from fleet.cli.main import main

    assert main(["setup", "--no-instances", "--pool-limit", "2"]) == 0
    capsys.readouterr()
    assert main(["setup", "--no-instances", "--pool-limit", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(": unchanged" in line or ": skipped" in line for line in lines), lines
    assert lines[0] == "work pool fleet: unchanged"


@pytest.mark.usefixtures("prefect_server")
def test_setup_installs_zombie_detection_and_recovery_once_the_recover_flow_is_deployed():
    from prefect.blocks.notifications import SlackWebhook

    from deployments.setup import RECOVERY_AUTOMATION, ZOMBIE_AUTOMATION
    from flows.recover import recover

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        SlackWebhook(url="https://hooks.slack.invalid/services/T/B/X").save(
            "fleet-oncall", overwrite=True
        )
    with get_client(sync_client=True) as client:
        for name in (RECOVERY_AUTOMATION,):
            for found in client.read_automations_by_name(name):
                client.delete_automation(found.id)
        with contextlib.suppress(Exception):
            client.delete_deployment(client.read_deployment_by_name("recover/fleet").id)
    steps = {s.name: s for s in setup(notification_block="slack-webhook/fleet-oncall")}
    assert steps[RECOVERY_AUTOMATION].action == "skipped"
    assert "recover/fleet is not deployed yet" in str(steps[RECOVERY_AUTOMATION])
    deployment_id = recover.to_deployment("fleet").apply()
    steps = {s.name: s for s in setup(notification_block="slack-webhook/fleet-oncall")}
    assert steps[RECOVERY_AUTOMATION].action == "created"
    assert steps[ZOMBIE_AUTOMATION].action in ("created", "unchanged")
    with get_client(sync_client=True) as client:
        (zombie,) = client.read_automations_by_name(ZOMBIE_AUTOMATION)
        trigger = zombie.trigger
        assert trigger.posture == "Proactive" and trigger.within.total_seconds() == 90  # type: ignore[union-attr]
        assert trigger.after == {"prefect.flow-run.heartbeat"}  # type: ignore[union-attr]
        # A suspended run waiting for an approval has no process: it is not a zombie.
        assert "prefect.flow-run.Suspended" in trigger.expect  # type: ignore[union-attr]
        assert zombie.actions[0].type == "change-flow-run-state"
        (recovery,) = client.read_automations_by_name(RECOVERY_AUTOMATION)
        assert recovery.trigger.expect == {"prefect.flow-run.Crashed"}  # type: ignore[union-attr]
        run, notify = recovery.actions
        assert run.type == "run-deployment" and str(run.deployment_id) == str(deployment_id)  # type: ignore[union-attr]
        assert run.parameters["flow_run_id"] == "{{ flow_run.id }}"  # type: ignore[union-attr]
        assert notify.type == "send-notification"
