"""End to end, real processes only: the main job brings up a Prefect server, an
agent per instance, Fleet's API and the served flows on a small fleet; the test
acts as an operator and an approver would, through the API (and Prefect's REST
API for the flow the Fleet API does not start)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from fleet.artifacts import build_demo_artifact
from tests.e2e.stack import ROOT, Stack

pytestmark = pytest.mark.slow

INSTANCES = [("a1", "auto"), ("a2", "auto"), ("m1", "manual"), ("f1", "frozen")]
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def fleet_file(path: Path) -> Path:
    # Auto-update may run in its maintenance window: keep that window away from the test
    # so that only the runs the test starts touch the instances.
    window = (datetime.now(UTC) + timedelta(hours=12)).hour
    data = {
        "format": 1,
        "components": ["api", "web"],
        "versions": [
            {"component": c, "version": "1.0.0", "released_at": "2026-01-01T00:00:00Z"}
            for c in ("api", "web")
        ],
        "channels": [
            {
                "name": "auto",
                "policy": "auto-update",
                "maintenance_window": {"cron": f"0 {window} * * *", "duration": "1h"},
            },
            {
                "name": "manual",
                "policy": "manual-approval",
                "approvals_required": 1,
                "approval_timeout": "1h",
            },
            {"name": "frozen", "policy": "frozen"},
        ],
        "instances": [
            {
                "name": name,
                "customer": name.upper(),
                "channel": channel,
                "current": {"api": "1.0.0", "web": "1.0.0"},
            }
            for name, channel in INSTANCES
        ],
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class Operator:
    """The stack seen from outside: Fleet's API with tokens, Prefect's API, the agents."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.api = httpx.Client(base_url=stack.api_url, timeout=30)
        self.prefect = httpx.Client(base_url=f"{stack.prefect_url}/api", timeout=30)
        self.operator = {"Authorization": f"Bearer {stack.token('operator')}"}
        self.approver = {"Authorization": f"Bearer {stack.token('approver')}"}

    def close(self) -> None:
        self.api.close()
        self.prefect.close()

    def call(self, method: str, path: str, *, as_: str = "operator", **kw: Any) -> Any:
        headers = self.operator if as_ == "operator" else self.approver
        r = self.api.request(method, path, headers=headers, **kw)
        assert r.is_success, f"{method} {path}: {r.status_code} {r.text}"
        return r.json()

    def publish(self, component: str, version: str) -> None:
        store = self.stack.home / "demo" / "artifacts"
        ref = build_demo_artifact(store, component, version, size=2_000)
        body = {"version": version, "artifact": {"url": ref.url, "sha256": ref.sha256}}
        self.call("POST", f"/components/{component}/versions", json=body)

    def run(self, run_id: str) -> dict[str, Any]:
        r = self.prefect.get(f"/flow_runs/{run_id}")
        r.raise_for_status()
        return dict(r.json())

    def wait_state(self, run_id: str, types: set[str], timeout: float = 240) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.run(run_id)
            if run["state_type"] in types:
                return run
            time.sleep(0.3)
        raise AssertionError(f"run {run_id} not in {types} after {timeout}s: {self.run(run_id)}")

    def start_deployment(self, name: str, parameters: dict[str, Any]) -> str:
        deployment = self.prefect.get(f"/deployments/name/{name}").json()
        r = self.prefect.post(
            f"/deployments/{deployment['id']}/create_flow_run", json={"parameters": parameters}
        )
        r.raise_for_status()
        return str(r.json()["id"])

    def agent(self, instance: str, path: str, method: str = "GET", **kw: Any) -> Any:
        index = [n for n, _ in INSTANCES].index(instance)
        url = f"http://127.0.0.1:{self.stack.agent_port_base + index}{path}"
        token = (self.stack.home / "demo" / "agents" / instance / "token").read_text().strip()
        r = httpx.request(method, url, headers={"Authorization": f"Bearer {token}"}, **kw)
        r.raise_for_status()
        return r.json()

    def running(self, instance: str) -> dict[str, str]:
        return dict(self.agent(instance, "/v1/state")["components"])

    def history(self, instance: str) -> list[dict[str, Any]]:
        return list(self.call("GET", f"/history/{instance}")["items"])

    def flow_runs(self) -> list[dict[str, Any]]:
        r = self.prefect.post("/flow_runs/filter", json={"limit": 200})
        r.raise_for_status()
        return list(r.json())


def test_a_release_reaches_every_instance_as_its_policy_says(tmp_path: Path) -> None:
    home = tmp_path / "home"
    stack = Stack(home, fleet_file(tmp_path / "fleet.yaml"), agents=len(INSTANCES))
    try:
        stack.start()
        op = Operator(stack)
        try:
            scenario(op, stack)
        finally:
            op.close()
    finally:
        code = stack.stop()
        stack.kill_leftovers()
    assert code == 0, stack.output


def scenario(op: Operator, stack: Stack) -> None:
    # 1. A release: api and web 1.1.0.
    op.publish("api", "1.1.0")
    op.publish("web", "1.1.0")

    # 2. A rollout: auto-update instances deploy; the manual one waits; the frozen one stays.
    rollout = op.call("POST", "/rollouts", json={"strategy": {"halt_after": "100%"}})
    run_id = rollout["flow_run_id"]
    op.wait_state(run_id, {"PAUSED"})
    release = {"api": "1.1.0", "web": "1.1.0"}
    assert op.running("a1") == release and op.running("a2") == release
    assert op.history("m1")[-1]["status"] == "compiled"
    waiting = op.call("GET", "/approvals")["items"]
    assert [w["flow_run_id"] for w in waiting] == [run_id]

    # 3. The requester may not approve; a different principal does, verified, through the API.
    denied = op.api.post(f"/approvals/{run_id}", headers=op.operator, json={})
    assert denied.status_code == 403, denied.text
    decided = op.call("POST", f"/approvals/{run_id}", as_="approver", json={"comment": "ok"})
    assert decided["verified"] is True and decided["instances"] == ["m1"]
    assert decided["approver"] != rollout["requested_by"]
    assert op.wait_state(run_id, FINAL)["state_type"] == "COMPLETED"
    assert op.running("m1") == release
    assert op.agent("f1", "/v1/state")["components"] == {}  # frozen: nothing deployed
    assert op.history("f1") == []
    (record,) = op.call("GET", "/history/m1/deployments")["items"]
    assert [(a["approver"], a["verified"]) for a in record["approvals"]] == [
        (decided["approver"], True)
    ]
    before_second_release = datetime.now(UTC)
    time.sleep(1)

    # 4. A critical advisory on api 1.0.0 is enforced on the frozen instance: api only.
    osv = {
        "id": "E2E-2026-0001",
        "published": "2026-11-01T00:00:00Z",
        "affected": [
            {
                "package": {"name": "e2e-api"},
                "ranges": [
                    {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.1.0"}]}
                ],
            }
        ],
        "database_specific": {"severity": "CRITICAL"},
    }
    op.call("POST", "/advisories/osv", json={"records": osv, "component_map": {"e2e-api": "api"}})
    patch = op.start_deployment(
        "patch-rollout/fleet", {"advisory": "E2E-2026-0001", "requested_by": "e2e"}
    )
    assert op.wait_state(patch, FINAL)["state_type"] == "COMPLETED"
    assert op.running("f1") == {"api": "1.1.0", "web": "1.0.0"}

    # 5. A fault on one instance: its deploy fails its health check and is rolled back.
    op.publish("api", "1.2.0")
    op.agent("a2", "/v1/faults", method="PUT", json={"unhealthy": True})
    second = op.call(
        "POST",
        "/rollouts",
        json={"selector": {"channels": ["auto"]}, "strategy": {"halt_after": "100%"}},
    )["flow_run_id"]
    assert op.wait_state(second, FINAL)["state_type"] == "COMPLETED"
    op.agent("a2", "/v1/faults", method="PUT", json={"unhealthy": False})
    assert op.running("a1") == {"api": "1.2.0", "web": "1.1.0"}
    assert op.running("a2") == release  # back on what it ran before
    outcomes = [d["outcome"] for d in op.call("GET", "/history/a2/deployments")["items"]]
    assert outcomes == ["succeeded", "rolled-back"]
    assert [h["status"] for h in op.history("a2")] == ["deployed", "failed"]

    # 6. A rollback to a point in time restores the manifest that ran then.
    back = op.call(
        "POST",
        "/rollbacks",
        json={
            "instances": ["a1"],
            "target": before_second_release.isoformat(),
            "reason": "1.2.0 slows the login page",
        },
    )["flow_run_id"]
    assert op.wait_state(back, FINAL)["state_type"] == "COMPLETED"
    assert op.running("a1") == release
    revisions = op.history("a1")
    assert revisions[-1]["rollback_of"] == revisions[0]["revision"]
    assert revisions[-1]["manifest"] == revisions[0]["manifest"]

    # 7. The audit chain verifies.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEET_", "PREFECT_"))}
    env["FLEET_HOME"] = str(stack.home)
    verify = subprocess.run(
        [sys.executable, "-m", "fleet.cli.main", "audit", "verify"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr

    # 8. Every run of a flow that changes the fleet has Fleet's records (audit events with
    #    its flow run id), and every flow run id in Fleet's records is a run in Prefect.
    started = {run_id, patch, second, back}
    prefect_runs = {r["id"]: r for r in op.flow_runs()}
    assert started <= set(prefect_runs)
    flows = {f["id"]: f["name"] for f in op.prefect.post("/flows/filter", json={}).json()}
    changing = {
        rid
        for rid, r in prefect_runs.items()
        if flows[r["flow_id"]] in {"compile-and-deploy", "patch-rollout", "rollback"}
        and r["state_type"] in FINAL
    }
    assert started <= changing
    exported = op.api.get("/audit/export", headers=op.operator)
    events = [json.loads(line) for line in exported.text.splitlines() if line.strip()]
    recorded = {e["flow_run_id"] for e in events if e.get("flow_run_id")}
    assert changing <= recorded
    assert recorded <= set(prefect_runs)
    for name, _ in INSTANCES:
        for item in op.call("GET", f"/history/{name}/deployments")["items"]:
            assert item["flow_run_id"] in prefect_runs
        for revision in op.history(name):
            assert revision["flow_run_id"] in prefect_runs
