"""The Prefect UI in a real browser: approve a paused rollout through the Resume
form, and start a rollout from the deployment's Run form."""

from __future__ import annotations

import time
from typing import Any

import pytest
from prefect.client.orchestration import get_client

from fleet.services import approvals
from flows.compile_and_deploy import compile_and_deploy
from tests.browser.conftest import in_thread, run_in_thread
from tests.flows.runs import FAST, paused_run
from tests.flows.support import build_world

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("prefect_ui", "fleet_db")]


def test_approve_a_paused_rollout_in_the_resume_form(
    tmp_path: Any, start_agent: Any, page: Any, prefect_ui: str
) -> None:
    world = in_thread(
        build_world, tmp_path, start_agent, [("m1", "manual", None)], approvals_required=1
    )
    thread, box = run_in_thread(compile_and_deploy, requested_by="ops", strategy=FAST)
    run_id = paused_run("compile-and-deploy")

    page.goto(f"{prefect_ui}/runs/flow-run/{run_id}")
    page.get_by_role("button", name="Resume", exact=True).click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Resume Flow Run").wait_for()
    dialog.get_by_text("Approval needed").wait_for()  # the form's Markdown description
    assert "Requested by ops" in dialog.inner_text()
    # The decision comes pre-set to approve by the flow's form (RunInput.with_initial_data).
    assert dialog.locator(".p-select-button__control").inner_text().strip() == "approve"
    dialog.locator(".p-label", has_text="Approver").locator("textarea").fill("alice")
    dialog.locator(".p-label", has_text="Comment").locator("textarea").fill("release notes read")
    page.shot("resume-form")
    dialog.get_by_role("button", name="Submit", exact=True).click()

    thread.join(90)
    assert not thread.is_alive() and "error" not in box, box
    page.reload()
    page.get_by_text("Completed").first.wait_for()
    page.shot("completed")
    assert box["result"]["outcomes"] == {"m1": "succeeded"}
    assert world.running("m1") == {"api": "1.1.0", "web": "1.1.0"}
    given = approvals.given(run_id)
    assert [(a.instance, a.approver, a.decision, a.comment, a.verified) for a in given] == [
        ("m1", "alice", "approve", "release notes read", False)  # self-declared
    ]


def test_start_a_rollout_from_the_deployment_run_form(page: Any, prefect_ui: str) -> None:
    deployment_id = in_thread(
        lambda: compile_and_deploy.to_deployment(
            "fleet", parameters={"dry_run": False, "requested_by": "scheduler"}
        ).apply()
    )

    page.goto(f"{prefect_ui}/deployments/deployment/{deployment_id}")
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("Custom run").click()
    page.get_by_role("button", name="Selector", exact=True).click()
    page.get_by_role("button", name="Add item").first.click()
    instances = page.locator(".p-label", has_text="Instances (Optional)").last
    instances.locator("textarea").fill("acme-prod")
    page.get_by_role("switch").first.click()  # dry_run
    page.locator(".p-label", has_text="requested_by").locator("textarea").fill("carol")
    page.shot("run-form")
    page.locator("button[type=submit]").click()
    run = created_run(deployment_id)
    page.get_by_text(run.name).first.wait_for()  # the deployment page lists the new run
    page.shot("run-created")
    assert run.parameters["requested_by"] == "carol"
    assert run.parameters["dry_run"] is True
    assert run.parameters["selector"]["instances"] == ["acme-prod"]


def created_run(deployment_id: Any, timeout: float = 30) -> Any:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
            )
            if runs:
                assert len(runs) == 1
                return runs[0]
            time.sleep(0.2)
    raise AssertionError("no run of the deployment was created")
