"""Fleet's console in Debian's Chromium: `fleet api serve` in a child process, a real
Prefect server with its UI, real agents for the approval run. Screenshots of every
page go to test-output/console/."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from playwright.sync_api import expect
from sqlalchemy import Engine

from fleet.core.fleetfile import parse_fleet_data
from fleet.db.engine import make_engine
from fleet.db.migrate import upgrade
from fleet.services import approvals, tokens
from fleet.services.fleet import apply_fleet_file
from tests.api.support import EXAMPLE
from tests.browser.conftest import fleet_api, in_thread
from tests.e2e.stack import free_port
from tests.flows.runs import form_description
from tests.flows.support import build_world

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-output" / "console"
HOSTILE = '<script>alert("x")</script>'


@pytest.fixture(scope="module", autouse=True)
def shots() -> Path:
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    return SHOTS


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def watch(page: Any) -> dict[str, list[str]]:
    """Dialogs (an injected script would open one) and console errors (a CSP or
    integrity refusal shows there)."""
    seen: dict[str, list[str]] = {"dialogs": [], "errors": []}

    def on_dialog(dialog: Any) -> None:
        seen["dialogs"].append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("console", lambda m: seen["errors"].append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))
    return seen


def sign_in(page: Any, url: str, token: str) -> None:
    page.goto(f"{url}/")
    page.wait_for_url("**/console/sign-in**")
    page.locator("#token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console/")


def csrf_of(page: Any) -> str:
    return str(page.locator("input[name=csrf]").first.get_attribute("value"))


def server_env(database_url: str, prefect: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FLEET_"))}
    env.update(
        FLEET_DATABASE_URL=database_url,
        PREFECT_API_URL=f"{prefect}/api",
        PREFECT_UI_URL=prefect,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PYTHONPATH=str(ROOT),
        **extra,
    )
    return env


@dataclass
class Example:
    url: str
    engine: Engine
    secrets: dict[str, str]


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory, ui_server: str) -> Iterator[Example]:
    """The example fleet in its own database, one token per role, served."""
    folder = tmp_path_factory.mktemp("console-example")
    url = f"sqlite:///{folder / 'fleet.db'}"
    upgrade(url)
    engine = make_engine(url)
    data = yaml.safe_load(EXAMPLE.read_text())
    next(i for i in data["instances"] if i["name"] == "hooli-prod")["customer"] = f"Hooli {HOSTILE}"
    apply_fleet_file(parse_fleet_data(data), actor="tests", engine=engine)
    secrets = {
        role: tokens.create_token(role, role, actor="tests", engine=engine)[1]
        for role in ("viewer", "operator", "approver", "admin")
    }
    with fleet_api(server_env(url, ui_server), folder / "api.log") as served:
        yield Example(served, engine, secrets)
    engine.dispose()


def test_sign_in_and_read_the_matrix_of_the_example_fleet(page: Any, example: Example) -> None:
    seen = watch(page)
    page.goto(f"{example.url}/")
    page.wait_for_url("**/console/sign-in**")
    shot(page, "sign-in")
    sign_in(page, example.url, example.secrets["operator"])
    rows = page.locator("table.matrix tbody tr")
    assert rows.count() == 12
    assert page.locator(".principal").inner_text() == "operator"
    initech = page.locator("table.matrix tbody tr", has_text="initech-prod")
    api_cell = initech.locator("td").nth(0)
    assert "st-enforced" in str(api_cell.get_attribute("class"))  # the critical fix, frozen or not
    assert api_cell.inner_text().startswith("2.3.1")
    assert "FLEET-2026-0007" in initech.locator("td.badges").inner_text()
    # The customer named with a script is text in the page, and nothing ran.
    assert page.locator("table.matrix").get_by_text(f"Hooli {HOSTILE}").count() == 1
    shot(page, "matrix")
    # The filters swap the table in place (htmx, loaded from the console under its hash).
    page.locator("select[name=channel]").select_option("lts")
    page.wait_for_url("**channel=lts**")
    expect(rows).to_have_count(4)  # (the CSP forbids the eval wait_for_function needs)
    shot(page, "matrix-lts")
    assert seen == {"dialogs": [], "errors": []}


def test_every_page_of_the_example_fleet(page: Any, example: Example) -> None:
    seen = watch(page)
    sign_in(page, example.url, example.secrets["admin"])
    page.goto(f"{example.url}/console/instances/initech-prod")
    page.get_by_role("heading", name="The plan now, and why").wait_for()
    assert "security fix for FLEET-2026-0007" in page.locator("table.plan").inner_text()
    shot(page, "instance")
    page.get_by_role("button", name="Preview the rollback").click()
    page.locator("#rollback .notice.bad").first.wait_for()  # nothing ran before: no target
    shot(page, "instance-rollback-preview")
    page.goto(f"{example.url}/console/security")
    page.locator("svg.chart").wait_for()
    critical = page.locator("section.sev-critical")
    assert "initech-prod" in critical.inner_text() and "risk-accepted" in critical.inner_text()
    shot(page, "security")
    page.goto(f"{example.url}/console/audit")
    page.get_by_text("Chain intact.").wait_for()  # the verdict, fetched after the page
    shot(page, "audit")
    page.goto(f"{example.url}/console/approvals")
    page.get_by_text("No run waits for approval.").wait_for()
    shot(page, "approvals-none")
    page.goto(f"{example.url}/console/instances/%3Cscript%3Ealert(1)")
    page.get_by_text("Unknown instance: '<script>alert(1)'").wait_for()
    shot(page, "unknown-instance")
    assert seen["dialogs"] == []
    assert [e for e in seen["errors"] if "404" not in e] == []


SERVE = (
    "from flows.compile_and_deploy import compile_and_deploy\n"
    "compile_and_deploy.serve(name='console-e2e', limit=4)\n"
)


def wait_for(what: str, probe: Any, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = in_thread(probe)
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def run_state(run_id: str) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id).state


@pytest.fixture
def migrated_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A Fleet database made by the migrations (`fleet api serve` checks), the default."""
    from fleet.db.engine import dispose_engines
    from fleet.settings import get_settings

    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    upgrade(url)
    monkeypatch.setenv("FLEET_DATABASE_URL", url)
    get_settings.cache_clear()
    yield url
    dispose_engines()
    get_settings.cache_clear()


@pytest.mark.usefixtures("prefect_ui")
def test_approve_a_suspended_run_end_to_end_as_the_signed_in_principal(
    tmp_path: Path, start_agent: Any, page: Any, prefect_ui: str, migrated_db: str
) -> None:
    fleet_db = migrated_db
    world = in_thread(
        build_world, tmp_path, start_agent, [("m1", "manual", None)], approvals_required=1
    )
    secrets = {
        name: tokens.create_token(name, role, actor="tests")[1]
        for name, role in (("ops", "operator"), ("bob", "approver"), ("vera", "viewer"))
    }
    port = free_port()
    console = f"http://127.0.0.1:{port}"
    env = server_env(fleet_db, prefect_ui, FLEET_CONSOLE_URL=console)
    log = (tmp_path / "serve.log").open("wb")
    served = subprocess.Popen(
        [sys.executable, "-c", SERVE], cwd=ROOT, env=env, stdout=log, stderr=log
    )
    try:
        with fleet_api(env, tmp_path / "api.log", port=port):
            run_id = _approve_in_the_console(page, console, secrets, world)
    finally:
        served.terminate()
        served.wait(30)
        log.close()
    assert world.running("m1") == {"api": "1.1.0", "web": "1.1.0"}
    given = approvals.given(run_id)
    assert [(a.instance, a.approver, a.decision, a.verified) for a in given] == [
        ("m1", "bob", "approve", True)
    ]
    assert given[0].comment == f"ship it {HOSTILE}"


def _approve_in_the_console(page: Any, console: str, secrets: dict[str, str], world: Any) -> str:
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    def deployment_ready() -> Any:
        with get_client(sync_client=True) as client:
            try:
                return client.read_deployment_by_name("compile-and-deploy/console-e2e")
            except Exception:
                return None

    wait_for("the served deployment", deployment_ready, 90)
    run = in_thread(
        run_deployment,
        "compile-and-deploy/console-e2e",
        parameters={"requested_by": "ops", "strategy": {"retries": 2, "retry_delay_seconds": 0.1}},
        timeout=0,
    )
    run_id = str(run.id)
    wait_for("the run to suspend", lambda: (s := run_state(run_id)) and s.name == "Suspended")
    assert world.applies("m1") == []
    # The Prefect UI's approval form sends people here.
    assert f"{console}/console/approvals/{run_id}" in in_thread(form_description, run_id)

    seen = watch(page)
    # A viewer sees the run, its diff and reasons, and no approve button; the POST is refused.
    sign_in(page, console, secrets["vera"])
    page.goto(f"{console}/console/approvals")
    card = page.locator(f"#run-{run_id}")
    card.wait_for()
    assert "Requested by ops" in card.inner_text()
    assert re.search(r"api\s+1\.0\.0\s+1\.1\.0", card.locator("table.plan").inner_text())
    assert page.get_by_role("button", name=re.compile("Approve")).count() == 0
    assert "Approving needs the approver role" in card.inner_text()
    shot(page, "approvals-viewer")
    refused = page.request.post(
        f"{console}/console/approvals/{run_id}",
        form={"csrf": csrf_of(page), "decision": "approve"},
    )
    assert refused.status == 403 and "does not grant" in refused.text()
    page.context.clear_cookies()

    # An approver's request without its CSRF token is refused; nothing is recorded.
    sign_in(page, console, secrets["bob"])
    forged = page.request.post(
        f"{console}/console/approvals/{run_id}", form={"decision": "approve"}
    )
    assert forged.status == 403 and "CSRF" in forged.text()
    assert approvals.given(run_id) == []

    # The approver follows the form's link, approves with a comment, and the run goes on.
    page.goto(f"{console}/console/approvals/{run_id}")
    page.locator("textarea[name=comment]").fill(f"ship it {HOSTILE}")
    shot(page, "approval-run")
    page.get_by_role("button", name="Approve as bob").click()
    page.get_by_text("Recorded: your decision (approve) as bob, verified.").wait_for()
    final = wait_for("the resumed run to finish", lambda: (s := run_state(run_id)).is_final() and s)
    assert final.is_completed(), final
    page.reload()
    page.get_by_text("This run is not waiting for approval").wait_for()
    comment = page.locator("q.comment").first
    assert comment.inner_text() == f"ship it {HOSTILE}"  # text, not markup
    shot(page, "approval-done")
    page.goto(f"{console}/console/instances/m1")
    page.get_by_text("approved r1 by bob (verified)").wait_for()
    shot(page, "instance-after-approval")
    # The timeline links the run's page, filtered to this instance: its deploy in one step.
    page.locator(f"a[href*='/console/runs/{run_id}']").first.click()
    page.get_by_text("1 deployment record: 1 succeeded").wait_for()
    assert "m1" in page.locator("table.events").inner_text()
    shot(page, "run")
    assert seen["dialogs"] == []
    return run_id
