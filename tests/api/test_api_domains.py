"""Domain routes: the plan preview is `fleet plan --json`, errors are problem+json
naming the bad value, bad input writes nothing, lists paginate, OpenAPI is complete."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert

from fleet.cli.main import main
from fleet.db.engine import transaction
from fleet.services import audit, tokens
from fleet.settings import get_settings

OSV = Path(__file__).resolve().parents[1] / "data" / "osv"
AT = "2026-11-26T12:00:00Z"


def chain_length(api) -> int:
    return sum(1 for _ in audit.events(engine=api.engine))


@pytest.mark.parametrize(
    "query",
    [
        [],
        ["--instance", "acme-prod"],
        ["--channel", "lts", "--label", "region=eu"],
    ],
)
def test_plan_preview_is_exactly_fleet_plan_json(api, monkeypatch, capsys, query):
    monkeypatch.setenv("FLEET_DATABASE_URL", api.url)
    get_settings.cache_clear()
    try:
        assert main(["plan", "--json", "--at", AT, *query]) == 0
        cli = json.loads(capsys.readouterr().out)
    finally:
        get_settings.cache_clear()
    params = [("at", AT)] + [(q[2:], v) for q, v in zip(query[::2], query[1::2], strict=True)]
    r = api.client.get("/plans/preview", params=params, headers=api.auth("viewer"))
    assert r.status_code == 200, r.text
    assert r.json() == cli
    assert r.json()["instances"]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"instance": "ghost"}, "'ghost'"),
        ({"channel": "nightly"}, "'nightly'"),
        ({"label": "noequals"}, "'noequals'"),
        ({"at": "2026-11-26T12:00:00"}, "2026-11-26T12:00:00"),
        ({"at": "tomorrow"}, "tomorrow"),
    ],
)
def test_bad_plan_queries_are_422_problems_naming_the_value(api, params, named):
    r = api.client.get("/plans/preview", params=params, headers=api.auth("viewer"))
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == 422 and body["title"] and named in body["detail"]


def test_lists_paginate(api):
    headers = api.auth("viewer")
    whole = api.client.get("/instances", headers=headers).json()
    assert whole["total"] == len(whole["items"]) > 3
    names = []
    for offset in range(0, whole["total"], 3):
        page = api.client.get(f"/instances?limit=3&offset={offset}", headers=headers).json()
        assert page["limit"] == 3 and page["offset"] == offset and len(page["items"]) <= 3
        names += [i["name"] for i in page["items"]]
    assert names == [i["name"] for i in whole["items"]]
    r = api.client.get("/instances?limit=0", headers=headers)
    assert r.status_code == 422 and r.json()["invalid-params"][0]["name"] == "query.limit"
    events = api.client.get("/audit/events?limit=2&offset=1", headers=headers).json()
    assert [e["seq"] for e in events["items"]] == [2, 3]


def test_bad_osv_import_writes_nothing(api):
    good = json.loads((OSV / "PYSEC-2023-74.json").read_text())
    before = chain_length(api)
    r = api.client.post(
        "/advisories/osv",
        json={
            "records": [good],
            "component_map": {"requests": "billing"},
            "default_severity": "high",
        },
        headers=api.auth("operator"),
    )
    assert r.status_code == 422 and "'billing'" in r.json()["detail"]
    assert chain_length(api) == before
    r = api.client.post(
        "/advisories/osv",
        json={"records": [good], "component_map": {"requests": "api"}, "default_severity": "high"},
        headers=api.auth("operator"),
    )
    assert r.status_code == 200, r.text
    assert r.json()["created"] == ["PYSEC-2023-74 (api)"]
    actors = {e.actor for e in audit.events(engine=api.engine) if e.seq > before}
    assert actors == {"operator"}


@pytest.mark.parametrize(
    ("method", "path", "body", "named"),
    [
        ("PUT", "/channels/stable", {"policy": "frozen", "soak": "forever"}, "'forever'"),
        ("PUT", "/channels/stable", {"policy": "frozen", "constraint": "~~2"}, "'~~2'"),
        ("PUT", "/channels/Bad_Name", {"policy": "frozen"}, "'Bad_Name'"),
        ("PUT", "/channels/stable", {"policy": "sometimes"}, "'sometimes'"),
        ("POST", "/components/api/versions", {"version": "not.a.version!"}, "'not.a.version!'"),
        ("POST", "/components/api/versions", {"version": "9.0", "requires": {"db": ">=1"}}, "db"),
        ("POST", "/components/ghost/versions", {"version": "1.0"}, "ghost"),
        (
            "POST",
            "/pins",
            {"scope": "planet:x", "component": "api", "spec": "<3", "reason": "r"},
            "planet:x",
        ),
        (
            "POST",
            "/pins",
            {"scope": "global", "component": "api", "spec": "<3", "reason": " "},
            "' '",
        ),
        (
            "POST",
            "/advisories/FLEET-2026-0004/risk-acceptances",
            {"instance": "acme-prod", "reason": "r", "until": "2001-01-01T00:00:00Z"},
            "2001-01-01",
        ),
        (
            "POST",
            "/pins",
            {"scope": "global", "component": "api", "spec": "<3", "reason": "r", "author": "x"},
            "body.author",  # the author is the caller
        ),
        ("PUT", "/instances/acme-prod/policy", {"policy_override": "never"}, "'never'"),
        ("POST", "/tokens", {"name": "has space", "role": "viewer"}, "'has space'"),
    ],
)
def test_bad_input_is_a_problem_naming_the_value_and_writes_nothing(api, method, path, body, named):
    before = chain_length(api)
    r = api.client.request(method, path, json=body, headers=api.auth("admin"))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert named in r.json()["detail"]
    assert chain_length(api) == before


def _stored_token(api, name: str) -> dict[str, str]:
    """Headers of an operator token stored under `name` as given, as a token made
    before a rule refused its name would be (`fleet tokens create` refuses it)."""
    secret = tokens.TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction(api.engine) as session:
        session.execute(
            insert(tokens.TOKEN),
            [
                {
                    "name": name,
                    "role": "operator",
                    "token_hash": tokens.hash_token(secret),
                    "created_at": datetime.now(UTC),
                }
            ],
        )
    return {"Authorization": f"Bearer {secret}"}


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("\u0430lice-ops", "U+0430 CYRILLIC SMALL LETTER A is Cyrillic, mixed with Latin"),
        ("ops\u200b", "U+200B is an invisible format character"),
    ],
)
def test_a_principal_whose_name_is_no_name_changes_no_pin(api, name, why):
    headers = _stored_token(api, name)
    pins = api.client.get("/pins", headers=api.auth("viewer")).json()
    before = chain_length(api)
    for method, path, body in [
        ("POST", "/pins", {"scope": "global", "component": "api", "spec": "<9", "reason": "r"}),
        ("POST", "/pins/1/expire", None),
        ("DELETE", "/pins/1", None),
    ]:
        r = api.client.request(method, path, json=body, headers=headers)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert f"{name!r} ({why})" in r.json()["detail"]
    assert chain_length(api) == before
    assert api.client.get("/pins", headers=api.auth("viewer")).json() == pins


def test_a_principal_name_is_recorded_trimmed(api):
    headers = _stored_token(api, "ops\n")
    pin = {"scope": "global", "component": "api", "spec": "<9", "reason": "r"}
    r = api.client.post("/pins", json=pin, headers=headers)
    assert r.status_code == 201 and r.json()["author"] == "ops"
    assert [e.actor for e in audit.events(engine=api.engine)][-1] == "ops"


def test_changes_are_attributed_to_the_principal(api):
    headers = api.auth("admin")
    r = api.client.post("/components/api/versions", json={"version": "2.6.0"}, headers=headers)
    assert r.status_code == 201, r.text
    r = api.client.post("/components/api/versions", json={"version": "2.6.0"}, headers=headers)
    assert r.status_code == 409
    r = api.client.put(
        "/channels/stable",
        json={"policy": "manual-approval", "constraint": "<3", "approvals_required": 2},
        headers=headers,
    )
    assert r.status_code == 200 and r.json()["approvals_required"] == 2
    assert r.json()["verified_approvals"] is False
    r = api.client.put(
        "/channels/lts",
        json={"policy": "manual-approval", "approvals_required": 2, "verified_approvals": True},
        headers=headers,
    )
    assert r.status_code == 200 and r.json()["verified_approvals"] is True
    assert api.client.get("/channels/lts", headers=headers).json()["verified_approvals"] is True
    r = api.client.put(
        "/channels/lts",
        json={"policy": "manual-approval", "verified_approvals": "nan"},
        headers=headers,
    )
    assert r.status_code == 422, r.text
    r = api.client.put(
        "/instances/acme-prod/policy", json={"policy_override": "frozen"}, headers=headers
    )
    assert r.json()["policy_override"] == "frozen"
    pin = api.client.post(
        "/pins",
        json={"scope": "instance:acme-prod", "component": "web", "spec": "<3", "reason": "audit"},
        headers=api.auth("operator"),
    ).json()
    assert pin["author"] == "operator"
    assert api.client.post(f"/pins/{pin['id']}/expire", headers=headers).status_code == 200
    assert api.client.post(f"/pins/{pin['id']}/expire", headers=headers).status_code == 409
    assert api.client.delete(f"/pins/{pin['id']}", headers=headers).status_code == 200
    assert api.client.delete(f"/pins/{pin['id']}", headers=headers).status_code == 404
    r = api.client.post(
        "/advisories/FLEET-2026-0004/risk-acceptances",
        json={"instance": "acme-prod", "reason": "WAF rule", "until": "2099-01-01T00:00:00Z"},
        headers=headers,
    )
    assert r.status_code == 201 and r.json()["by"] == "admin"
    actions = {e.action: e.actor for e in audit.events(engine=api.engine) if e.actor != "tests"}
    assert actions["version.create"] == "admin"
    assert actions["channel.update"] == "admin"
    assert actions["instance.update"] == "admin"
    assert actions["pin.create"] == "operator"
    assert actions["risk.accept"] == "admin"
    verdict = api.client.get("/audit/verify", headers=api.auth("viewer")).json()
    assert verdict["ok"] is True


def test_history_audit_export_and_compliance(api):
    headers = api.auth("viewer")
    assert api.client.get("/history/ghost", headers=headers).status_code == 404
    r = api.client.get("/audit/export", headers=headers)
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert r.headers["content-type"].startswith("application/jsonl")
    assert [e["seq"] for e in lines] == list(range(1, len(lines) + 1))
    r = api.client.get("/compliance?severity=critical", headers=headers)
    items = r.json()["items"]
    assert items and all(i["severity"] == "critical" for i in items)
    assert all(i["running"] for i in items)
    overdue = api.client.get("/compliance?overdue=true", headers=headers).json()["items"]
    assert all(i["overdue"] for i in overdue)


def test_every_route_has_a_description_and_an_example(api):
    document = api.client.get("/openapi.json").json()
    assert document["info"]["description"]
    assert "bearer" in json.dumps(document["components"]["securitySchemes"]).lower()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            assert operation.get("description"), where
            ok = [s for s in operation["responses"] if s.startswith("2")]
            assert ok, where
            for status in ok:
                content = operation["responses"][status]["content"]
                assert all("example" in media for media in content.values()), where
            for status, response in operation["responses"].items():
                if status.startswith("4"):
                    assert "application/problem+json" in response["content"], where


def test_the_preview_follows_every_change(api):
    headers = api.auth("admin")

    def decision() -> str:
        r = api.client.get("/plans/preview?instance=acme-prod", headers=headers)
        return str(r.json()["instances"][0]["decision"])

    first = decision()
    assert decision() == first  # the second read reuses the loaded fleet
    api.client.put(
        "/instances/acme-prod/policy", json={"policy_override": "frozen"}, headers=headers
    )
    frozen = decision()
    assert frozen in ("skip-frozen", "enforce-security", "noop")
    r = api.client.get("/plans/preview?instance=acme-prod", headers=headers)
    assert r.json()["instances"][0]["policy"] == "frozen"
    api.client.put("/instances/acme-prod/policy", json={"policy_override": None}, headers=headers)
    assert decision() == first


def test_audit_report_and_witnesses(api):
    from fleet.services.deployments import finish_deployment, start_deployment
    from fleet.services.manifests import compile_and_store, mark_manifest

    headers = api.auth("viewer")
    at = "2026-11-30T12:00:00Z"
    empty = api.client.get(f"/audit/reports/acme-prod?at={at}", headers=headers).json()
    assert empty["revision"] is None and empty["approvals"] == []
    run = "33333333-3333-4333-8333-333333333333"
    stored = compile_and_store(
        actor="ops", instances=["acme-prod"], flow_run_id=run, engine=api.engine
    )
    number = stored.revisions["acme-prod"]
    start_deployment("acme-prod", number, flow_run_id=run, actor="ops", engine=api.engine)
    mark_manifest("acme-prod", number, "deployed", actor="ops", flow_run_id=run, engine=api.engine)
    finish_deployment(
        "acme-prod", flow_run_id=run, outcome="succeeded", actor="ops", engine=api.engine
    )
    now = "2099-01-01T00:00:00Z"
    found = api.client.get(f"/audit/reports/acme-prod?at={now}", headers=headers).json()
    assert found["revision"]["number"] == number
    assert found["deployed_by"]["flow_run_id"] == run
    assert found["chain"]["ok"] is True
    r = api.client.get(f"/audit/reports/acme-prod/markdown?at={now}", headers=headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/markdown")
    assert r.text.startswith("# Audit report: acme-prod at 2099-01-01T00:00:00Z")
    r = api.client.get(f"/audit/reports/ghost?at={now}", headers=headers)
    assert r.status_code == 404 and "'ghost'" in r.json()["detail"]
    r = api.client.get("/audit/reports/acme-prod?at=2026-11-30T12:00:00", headers=headers)
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    witnessed = api.client.get("/audit/witnesses", headers=headers).json()
    assert witnessed["verdict"]["ok"] is True and isinstance(witnessed["notes"], list)
