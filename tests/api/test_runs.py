"""Rollouts, rollbacks and approvals through the API against a real Prefect server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prefect.client.orchestration import get_client

from fleet.api import create_app
from fleet.db.engine import create_all, dispose_engines, get_engine
from fleet.services import audit, deployments, tokens
from fleet.settings import Settings, get_settings
from flows.compile_and_deploy import Strategy, compile_and_deploy
from flows.rollback import rollback
from tests.agent.conftest import start_agent  # noqa: F401  (fixture)
from tests.api.support import Api
from tests.flows.support import build_world

pytestmark = pytest.mark.usefixtures("prefect_server")

FAST = Strategy(retries=8, retry_delay_seconds=0.05, approval_poll_seconds=1, halt_after="100%")


@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Api, str]]:
    """An API on the database the flows use too (the settings' default)."""
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    monkeypatch.setenv("FLEET_DATABASE_URL", url)
    get_settings.cache_clear()
    engine = get_engine(url)
    create_all(engine)
    api = Api(TestClient(create_app(Settings(database_url=url))), engine, url, {})
    with api.client:
        yield api, url
    dispose_engines()
    get_settings.cache_clear()


@pytest.fixture
def deployed() -> Iterator[dict[str, str]]:
    """compile-and-deploy/fleet and rollback/fleet exist (no worker: runs stay scheduled)."""
    ids = {
        "compile-and-deploy": str(compile_and_deploy.to_deployment("fleet").apply()),
        "rollback": str(rollback.to_deployment("fleet").apply()),
    }
    yield ids
    with get_client(sync_client=True) as client:
        for deployment_id in ids.values():
            client.delete_deployment(deployment_id)


def waiting_run(api: Api, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = api.client.get("/approvals", headers=api.auth("bob"))
        assert r.status_code == 200, r.text
        items = [i for i in r.json()["items"] if i["plan"]]
        if items:
            return dict(items[0])
        time.sleep(0.2)
    raise AssertionError("no run waiting for approval")


def test_a_paused_run_is_approved_by_distinct_verified_principals_and_continues(
    live,
    tmp_path,
    start_agent,  # noqa: F811
):
    api, _ = live
    world = build_world(tmp_path, start_agent, [("m1", "manual", None)], approvals_required=2)
    world.publish("api", "1.2.0")
    for name, role in (("ops", "admin"), ("bob", "approver"), ("carol", "approver")):
        api.add_token(name, role)
    box: dict[str, Any] = {}

    def run() -> None:
        box["result"] = compile_and_deploy(requested_by="ops", strategy=FAST)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    item = waiting_run(api)
    run_id = item["flow_run_id"]
    assert item["requested_by"] == "ops" and item["flow"] == "compile-and-deploy"
    assert item["plan"][0]["instance"] == "m1"
    assert item["plan"][0]["changes"]["api"] == {"from": "1.0.0", "to": "1.2.0"}
    assert "Approval needed" in (item["description"] or "")

    # The requester cannot approve, whatever their role: refused, recorded, still waiting.
    r = api.client.post(f"/approvals/{run_id}", json={}, headers=api.auth("ops"))
    assert r.status_code == 403 and "four eyes" in r.json()["detail"]
    refused = [e for e in audit.events(engine=api.engine) if e.action == "approval.refused"]
    assert [(e.actor, e.subject, e.flow_run_id) for e in refused] == [
        ("ops", "instance:m1", run_id)
    ]
    assert deployments.approvals_for("m1", engine=api.engine) == []

    r = api.client.post(f"/approvals/{run_id}", json={"comment": "ok"}, headers=api.auth("bob"))
    assert r.status_code == 200, r.text
    assert r.json()["approver"] == "bob" and r.json()["verified"] is True
    # The same principal twice still counts once: n approvals need n principals.
    r = api.client.post(f"/approvals/{run_id}", json={}, headers=api.auth("bob"))
    assert r.status_code == 200, r.text
    assert [(a.approver, a.verified) for a in deployments.approvals_for("m1")] == [("bob", True)]
    assert thread.is_alive()

    r = api.client.post(f"/approvals/{run_id}", json={"comment": "+1"}, headers=api.auth("carol"))
    assert r.status_code == 200, r.text
    thread.join(120)
    assert box["result"]["outcomes"] == {"m1": "succeeded"}
    assert world.running("m1")["api"] == "1.2.0"
    given = deployments.approvals_for("m1", flow_run_id=run_id)
    assert [(a.approver, a.decision, a.verified) for a in given] == [
        ("bob", "approve", True),
        ("carol", "approve", True),
    ]
    r = api.client.get("/approvals", headers=api.auth("bob"))
    assert all(i["flow_run_id"] != run_id for i in r.json()["items"])
    r = api.client.get("/history/m1/deployments", headers=api.auth("bob"))
    (record,) = r.json()["items"]
    assert record["outcome"] == "succeeded" and record["started_by"] == "ops"
    assert {a["approver"] for a in record["approvals"]} == {"bob", "carol"}


def test_a_rejection_through_the_api_deploys_nothing(live, tmp_path, start_agent):  # noqa: F811
    api, _ = live
    world = build_world(tmp_path, start_agent, [("m1", "manual", None)], approvals_required=1)
    world.publish("api", "1.2.0")
    api.add_token("bob", "approver")
    box: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: box.update(r=compile_and_deploy(requested_by="ops", strategy=FAST)),
        daemon=True,
    )
    thread.start()
    run_id = waiting_run(api)["flow_run_id"]
    r = api.client.post(
        f"/approvals/{run_id}",
        json={"decision": "reject", "comment": "not this week", "instances": ["nope"]},
        headers=api.auth("bob"),
    )
    assert r.status_code == 422 and "'nope'" in r.json()["detail"]
    assert deployments.approvals_for("m1") == []  # bad input wrote nothing
    r = api.client.post(
        f"/approvals/{run_id}",
        json={"decision": "reject", "comment": "not this week"},
        headers=api.auth("bob"),
    )
    assert r.status_code == 200, r.text
    thread.join(120)
    assert box["r"]["outcomes"] == {"m1": "skipped"}
    assert world.applies("m1") == []


def test_a_rerun_reusing_an_earlier_runs_revision_is_approved_through_the_api(
    live,
    tmp_path,
    start_agent,  # noqa: F811
):
    """Seen: a new run that reuses revisions compiled by an earlier (rejected) run
    answered 409 "waits for no instance" to every verified approval."""
    api, _ = live
    world = build_world(tmp_path, start_agent, [("m1", "manual", None)], approvals_required=1)
    api.add_token("ops", "admin")
    api.add_token("bob", "approver")
    first: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: first.update(r=compile_and_deploy(requested_by="ops", strategy=FAST)),
        daemon=True,
    )
    thread.start()
    run1 = waiting_run(api)["flow_run_id"]
    r = api.client.post(
        f"/approvals/{run1}",
        json={"decision": "reject", "comment": "not today"},
        headers=api.auth("bob"),
    )
    assert r.status_code == 200, r.text
    thread.join(120)
    assert first["r"]["outcomes"] == {"m1": "skipped"}

    second: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: second.update(r=compile_and_deploy(requested_by="ops", strategy=FAST)),
        daemon=True,
    )
    thread.start()
    item = waiting_run(api)
    run2 = item["flow_run_id"]
    assert run2 != run1
    (waiting,) = item["plan"]
    assert waiting["revision"] == 1 and waiting["hash"]  # the earlier run's revision, reused
    r = api.client.post(f"/approvals/{run2}/code", headers=api.auth("ops"))
    assert r.status_code == 403 and "four eyes" in r.json()["detail"]
    r = api.client.post(f"/approvals/{run2}/code", headers=api.auth("bob"))
    assert r.status_code == 201, r.text
    assert r.json()["principal"] == "bob" and r.json()["flow_run_id"] == run2
    r = api.client.post(f"/approvals/{run2}", json={"comment": "ok"}, headers=api.auth("bob"))
    assert r.status_code == 200, r.text
    assert [(a["revision"], a["manifest_hash"]) for a in r.json()["approvals"]] == [
        (1, waiting["hash"])
    ]
    thread.join(120)
    assert second["r"]["outcomes"] == {"m1": "succeeded"}
    assert world.running("m1")["api"] == "1.1.0"
    r = api.client.post(f"/approvals/{run2}/code", headers=api.auth("bob"))
    assert r.status_code == 409  # nothing left to decide


def test_deciding_an_unknown_or_finished_run(api):
    r = api.client.post(
        "/approvals/00000000-0000-0000-0000-000000000000", json={}, headers=api.auth("approver")
    )
    assert r.status_code == 404
    r = api.client.post("/approvals/not-a-uuid", json={}, headers=api.auth("approver"))
    assert r.status_code == 422 and "'not-a-uuid'" in r.json()["detail"]


def test_rollouts_start_through_the_deployment_with_the_caller_as_requester(api, deployed):
    body = {"selector": {"channels": ["stable"]}, "strategy": {"canary": "2", "batch": "50%"}}
    r = api.client.post("/rollouts", json=body, headers=api.auth("operator"))
    assert r.status_code == 202, r.text
    run = r.json()
    assert run["deployment"] == "compile-and-deploy/fleet"
    with get_client(sync_client=True) as client:
        stored = client.read_flow_run(run["flow_run_id"])
        assert str(stored.deployment_id) == deployed["compile-and-deploy"]
        assert stored.parameters["requested_by"] == "operator"
        assert stored.parameters["selector"]["channels"] == ["stable"]
        assert stored.parameters["strategy"] == {"canary": "2", "batch": "50%"}
    listed = api.client.get("/rollouts", headers=api.auth("viewer")).json()
    assert run["flow_run_id"] in [i["flow_run_id"] for i in listed["items"]]
    one = api.client.get(f"/rollouts/{run['flow_run_id']}", headers=api.auth("viewer")).json()
    assert one["state"] == "Scheduled" and one["requested_by"] == "operator"

    # The requester is the caller, never a value the client sends.
    r = api.client.post(
        "/rollouts", json={**body, "requested_by": "someone"}, headers=api.auth("operator")
    )
    assert r.status_code == 422 and "requested_by" in r.json()["detail"]
    for bad, named in (
        ({"selector": {"instances": ["ghost"]}}, "'ghost'"),
        ({"strategy": {"canary": "lots"}}, "'lots'"),
    ):
        r = api.client.post("/rollouts", json=bad, headers=api.auth("operator"))
        assert r.status_code == 422 and named in r.json()["detail"], r.text


def test_rollbacks_start_through_the_deployment_and_risk_needs_an_admin(api, deployed):
    body = {"instances": ["acme-prod"], "target": "r1", "reason": "SSO broken"}
    r = api.client.post("/rollbacks", json=body, headers=api.auth("operator"))
    assert r.status_code == 202, r.text
    with get_client(sync_client=True) as client:
        stored = client.read_flow_run(r.json()["flow_run_id"])
    assert stored.parameters["requested_by"] == "operator"
    assert stored.parameters["instances"] == ["acme-prod"] and stored.parameters["target"] == "r1"

    risky = {**body, "risk_acceptance": {"reason": "certified build", "until": "2099-01-01T00:00Z"}}
    r = api.client.post("/rollbacks", json=risky, headers=api.auth("operator"))
    assert r.status_code == 403
    r = api.client.post("/rollbacks", json=risky, headers=api.auth("admin"))
    assert r.status_code == 202, r.text
    with get_client(sync_client=True) as client:
        stored = client.read_flow_run(r.json()["flow_run_id"])
    assert stored.parameters["risk_acceptance"]["by"] == "admin"

    r = api.client.post(
        "/rollbacks", json={**body, "target": "yesterday"}, headers=api.auth("admin")
    )
    assert r.status_code == 422 and "'yesterday'" in r.json()["detail"]


def test_without_the_deployment_a_rollout_is_404_naming_it(api):
    r = api.client.post("/rollouts", json={}, headers=api.auth("operator"))
    assert r.status_code == 404 and "compile-and-deploy/fleet" in r.json()["detail"]


def test_tokens_module_is_what_the_api_authenticates_with(api):
    _, secret = tokens.create_token("dora", "viewer", actor="t", engine=api.engine)
    r = api.client.get("/pins", headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 200
