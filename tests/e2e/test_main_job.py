"""The main job: the whole stack comes up, Ctrl-C stops every process, a second
run on the same FLEET_HOME comes back to the same data."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.stack import Stack, processes_with_home

pytestmark = pytest.mark.slow

FLOWS = {
    "compile-and-deploy",
    "patch-rollout",
    "rollback",
    "compliance-scan",
    "auto-update",
    "drift-check",
}


def deployments(stack: Stack) -> dict[str, dict[str, object]]:
    r = httpx.post(f"{stack.prefect_url}/api/deployments/filter", json={}, timeout=10)
    r.raise_for_status()
    flows = httpx.post(f"{stack.prefect_url}/api/flows/filter", json={}, timeout=10).json()
    names = {f["id"]: f["name"] for f in flows}
    return {f"{names[d['flow_id']]}/{d['name']}": d for d in r.json()}


def scheduled_runs(stack: Stack, timeout: float = 90) -> set[str]:
    """Deployments with a future run that Prefect's scheduler created from their cron."""
    deadline = time.monotonic() + timeout
    wanted = {"compliance-scan/fleet", "auto-update/fleet", "drift-check/fleet"}
    found: set[str] = set()
    while time.monotonic() < deadline:
        ids = {d["id"]: name for name, d in deployments(stack).items()}
        r = httpx.post(
            f"{stack.prefect_url}/api/flow_runs/filter",
            json={"flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}, "limit": 200},
            timeout=10,
        )
        r.raise_for_status()
        found = {ids[run["deployment_id"]] for run in r.json() if run["deployment_id"] in ids}
        if wanted <= found:
            break
        time.sleep(1)
    return found


def gone(home: Path, timeout: float = 10) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := processes_with_home(home)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def signed_in_console(url: str, token: str) -> str:
    """Sign in to the console with `token` as a browser would; the matrix's HTML."""
    with httpx.Client(base_url=url, timeout=30, follow_redirects=True) as client:
        form = client.get("/")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert form.url.path == "/console/sign-in" and csrf is not None
        matrix = client.post("/console/sign-in", data={"csrf": csrf.group(1), "token": token})
        assert matrix.url.path == "/console/" and "signed in as" in matrix.text, matrix.text
        return matrix.text


def test_up_stop_and_up_again_on_the_same_data(tmp_path: Path) -> None:
    home = tmp_path / "home"
    stack = Stack(home)
    try:
        stack.start()
        assert f"Prefect UI    {stack.prefect_url}" in stack.output
        assert f"Fleet API     {stack.api_url}/docs" in stack.output
        ui = httpx.get(stack.prefect_url, timeout=10)
        assert ui.status_code == 200 and "<html" in ui.text.lower()
        assert httpx.get(f"{stack.api_url}/docs", timeout=10).status_code == 200
        found = deployments(stack)
        assert {f"{f}/fleet" for f in FLOWS} <= set(found)
        scheduled = {k for k, d in found.items() if d["schedules"]}
        assert scheduled == {"compliance-scan/fleet", "auto-update/fleet", "drift-check/fleet"}
        assert scheduled <= scheduled_runs(stack)
        operator = stack.token("operator")
        headers = {"Authorization": f"Bearer {operator}"}
        instances = httpx.get(f"{stack.api_url}/instances", headers=headers, timeout=10).json()
        assert instances["total"] == 12
        assert f"Fleet console {stack.api_url}/" in stack.output
        for role in ("operator", "approver"):
            matrix = signed_in_console(stack.api_url, stack.token(role))
            assert matrix.count('<th scope="row">') == 12
        first_id = found["compile-and-deploy/fleet"]["id"]
        children = processes_with_home(home)
        assert len(children) >= 15  # server, 12 agents, API, serve

        # One child dies: it is restarted, and the rest of the stack stays up.
        (api_pid,) = [
            p for p in children if b"api\0serve" in Path(f"/proc/{p}/cmdline").read_bytes()
        ]
        os.kill(api_pid, signal.SIGKILL)
        stack.wait_for_output("fleet-api restarted (restart 1)", timeout=30)
        assert "fleet-api exited with code -9" in stack.output
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{stack.api_url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the Fleet API did not come back"
            time.sleep(0.5)
        assert httpx.get(stack.prefect_url, timeout=10).status_code == 200
    finally:
        code = stack.stop()
        left = gone(home)
        stack.kill_leftovers()
    assert code == 0, stack.output
    assert "stopped: every process of the demo has exited" in stack.output
    assert left == []

    again = Stack(home)
    try:
        again.start()
        assert again.token("operator") == operator  # the same data, the same tokens
        assert "fleet file: reusing" in again.output
        assert "no changes (0 audit events)" in again.output
        found = deployments(again)
        assert found["compile-and-deploy/fleet"]["id"] == first_id
        headers = {"Authorization": f"Bearer {operator}"}
        verdict = httpx.get(f"{again.api_url}/audit/verify", headers=headers, timeout=10)
        assert verdict.status_code == 200, verdict.text
    finally:
        code = again.stop(signal.SIGTERM)  # the first run stopped on SIGINT
        left = gone(home)
        again.kill_leftovers()
    assert code == 0, again.output
    assert left == []
