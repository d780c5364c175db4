"""The console's pages on the example fleet: what they show, what they escape, and
what each role may do (the server refuses whatever the page offered)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from sqlalchemy import update

from fleet.console import matrix
from fleet.console.matrix import CellState
from fleet.core.fleetfile import parse_fleet_data
from fleet.db.engine import transaction
from fleet.db.models import AuditEventRow, table_of
from fleet.services import audit, deployments, manifests, overview
from fleet.services.fleet import apply_fleet_file
from tests.api.support import EXAMPLE, Api
from tests.console.support import sign_in

STORY = datetime(2026, 11, 26, 12, tzinfo=UTC)  # the example fleet's story is told then
HOSTILE = '<script>alert("x")</script>'


def rows_at(api: Api, now: datetime) -> dict[str, matrix.Row]:
    facts = overview.overview(now=now, engine=api.engine)
    return {r.instance: r for r in matrix.build_rows(facts)}


def cell(row: matrix.Row, component: str) -> matrix.Cell:
    return next(c for c in row.cells if c.component == component)


def test_the_matrix_colours_each_cell_by_state(api: Api) -> None:
    rows = rows_at(api, STORY)
    assert len(rows) == 12
    # initech-prod is frozen: the critical api fix is enforced, the rest waits.
    initech = rows["initech-prod"]
    assert cell(initech, "api").state is CellState.ENFORCED
    assert (cell(initech, "api").running, cell(initech, "api").target) == ("2.3.1", "2.3.3")
    assert {c.state for c in initech.cells if c.component != "api"} <= {
        CellState.CURRENT,
        CellState.FROZEN,
    }
    # globex-eu is frozen with the critical advisory risk-accepted: held back, not enforced.
    globex = rows["globex-eu"]
    assert CellState.ENFORCED not in globex.states
    assert any(b.advisory == "FLEET-2026-0007" and b.accepted for b in globex.badges)
    # The badge says how long is left before the deadline (or how long it is overdue).
    badge = next(b for b in rows["acme-prod"].badges if b.advisory == "FLEET-2026-0007")
    assert (badge.severity, badge.overdue(STORY)) == ("critical", True)
    assert badge.words(STORY) == "FLEET-2026-0007 · critical · overdue 4h"
    medium = next(b for b in rows["initech-prod"].badges if b.advisory == "FLEET-2026-0004")
    assert medium.words(STORY) == "FLEET-2026-0004 · medium · 14d left"
    # An instance that needs nothing shows its cells as current.
    current = [r for r in rows.values() if r.states == {CellState.CURRENT}]
    assert all(r.decision == "noop" for r in current)


def test_drift_and_failed_deploys_colour_their_cells(api: Api) -> None:
    from fleet.core.drift import compare
    from fleet.services import drift

    found = compare(
        "acme-sandbox",
        revision=None,
        recorded={"web": "3.0.0rc1"},
        recorded_hash=None,
        observed={"web": "2.5.0"},
        observed_hash=None,
    )
    drift.record_check(["acme-sandbox"], [found], actor="tests", engine=api.engine)
    stored = manifests.compile_and_store(
        actor="tests", now=STORY, instances=["hooli-prod"], engine=api.engine
    )
    number = stored.revisions["hooli-prod"]
    deployments.start_deployment(
        "hooli-prod", number, flow_run_id="run-1", actor="tests", engine=api.engine
    )
    deployments.finish_deployment(
        "hooli-prod",
        flow_run_id="run-1",
        outcome="failed",
        error=f"health check failed {HOSTILE}",
        actor="tests",
        engine=api.engine,
    )
    rows = rows_at(api, STORY)
    sandbox = rows["acme-sandbox"]
    assert cell(sandbox, "web").state is CellState.DRIFTED
    assert cell(sandbox, "web").running == "2.5.0"
    assert cell(sandbox, "api").state is not CellState.DRIFTED
    hooli = rows["hooli-prod"]
    assert cell(hooli, "api").state is CellState.ERROR
    assert "failed" in cell(hooli, "api").title

    csrf = sign_in(api.client, api.secrets["viewer"])
    assert csrf
    page = api.client.get("/console/", params={"state": "drifted"})
    assert page.status_code == 200
    assert 'class="st-drifted' in page.text and "acme-sandbox" in page.text
    assert "acme-prod<" not in page.text
    timeline = api.client.get("/console/instances/hooli-prod").text
    assert "deploy of r1 failed" in timeline
    assert HOSTILE not in timeline and "&lt;script&gt;" in timeline


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, 12),
        ({"channel": "lts"}, 4),
        ({"customer": "Initech"}, 2),
        ({"label": "region=us"}, 5),
        ({"label": "tier"}, 12),
        ({"q": "prod"}, 6),
        ({"channel": "lts", "label": "region=eu"}, 2),
        ({"channel": "nope"}, 0),
        ({"q": HOSTILE}, 0),
        ({"advisory": "FLEET-2026-0007"}, None),
    ],
)
def test_the_matrix_filters(api: Api, params: dict[str, str], expected: int | None) -> None:
    sign_in(api.client, api.secrets["viewer"])
    page = api.client.get("/console/", params=params)
    assert page.status_code == 200
    rows = re.findall(r'<th scope="row"><a href="/console/instances/([a-z0-9-]+)"', page.text)
    if expected is None:
        assert 0 < len(rows) < 12
    else:
        assert len(rows) == expected
    assert HOSTILE not in page.text


def test_the_matrix_pages_a_large_selection(api: Api) -> None:
    sign_in(api.client, api.secrets["viewer"])
    page = api.client.get("/console/", params={"size": 100, "page": 7})
    assert page.status_code == 200  # past the end: the last page
    assert "of 12 instances" in page.text
    for bad in ({"size": 0}, {"page": 0}, {"size": "NaN"}, {"page": 10**9}, {"q": "x" * 201}):
        r = api.client.get("/console/", params=bad)
        assert r.status_code == 422, bad
        assert r.headers["content-type"].startswith("text/html")


def test_names_comments_and_customers_render_as_text(api: Api) -> None:
    data = yaml.safe_load(Path(EXAMPLE).read_text())
    acme = next(i for i in data["instances"] if i["name"] == "acme-prod")
    acme["customer"] = f"Acme {HOSTILE} & Co"
    acme["labels"]["note"] = '"><img src=x onerror=alert(1)>'
    apply_fleet_file(parse_fleet_data(data), actor="tests", engine=api.engine)
    deployments.record_approval(
        "acme-prod",
        approver="bob",
        decision="approve",
        comment=f"looks fine {HOSTILE}",
        verified=True,
        engine=api.engine,
    )
    sign_in(api.client, api.secrets["viewer"])
    pages = [
        api.client.get("/console/"),
        api.client.get("/console/instances/acme-prod"),
        api.client.get("/console/instances/<script>alert(1)"),
        api.client.get("/console/", params={"customer": HOSTILE, "q": HOSTILE}),
        api.client.get("/console/audit", params={"subject": HOSTILE}),
        api.client.get("/console/audit"),
    ]
    assert [p.status_code for p in pages] == [200, 200, 404, 200, 200, 200]
    for page in pages:
        assert HOSTILE not in page.text
        assert "<img src=x" not in page.text
    assert "Acme &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; Co" in pages[0].text
    assert "looks fine &lt;script&gt;" in pages[1].text
    assert "verified" in pages[1].text
    assert "Unknown instance: &#39;&lt;script&gt;" in pages[2].text


def test_a_viewer_is_offered_no_action_and_is_refused_every_one(api: Api) -> None:
    csrf = sign_in(api.client, api.secrets["viewer"])
    page = api.client.get("/console/instances/acme-prod")
    assert "Starting a rollback needs the operator role" in page.text
    assert "rollback-target" not in page.text and "rollback-start" not in page.text
    run = "0f8b1c7e-3d2a-4c55-9d43-6f7a2b1e9c10"
    for path, body in (
        (f"/console/approvals/{run}", {"decision": "approve"}),
        ("/console/instances/acme-prod/rollback", {"target": "previous", "reason": "r"}),
    ):
        r = api.client.post(path, data={**body, "csrf": csrf}, follow_redirects=False)
        assert r.status_code == 403, r.text
        assert "does not grant" in r.text
    assert deployments.approvals_for("acme-prod", engine=api.engine) == []


def test_an_operator_cannot_approve_and_an_approver_cannot_roll_back(api: Api) -> None:
    run = "0f8b1c7e-3d2a-4c55-9d43-6f7a2b1e9c10"
    csrf = sign_in(api.client, api.secrets["operator"])
    r = api.client.post(f"/console/approvals/{run}", data={"csrf": csrf, "decision": "approve"})
    assert r.status_code == 403
    api.client.cookies.clear()
    csrf = sign_in(api.client, api.secrets["approver"])
    r = api.client.post("/console/instances/acme-prod/rollback", data={"csrf": csrf, "reason": "r"})
    assert r.status_code == 403
    # An approver's decision reaches the same service as the REST API: an unknown run is a 404.
    r = api.client.post(f"/console/approvals/{run}", data={"csrf": csrf, "decision": "approve"})
    assert r.status_code == 404 and "Unknown flow run" in r.text


@pytest.mark.parametrize(
    "change",
    [
        {"csrf": None},
        {"csrf": ""},
        {"csrf": "0" * 64},
        {"origin": "https://evil.example"},
        {"origin": "null"},
    ],
    ids=["missing", "empty", "wrong", "cross-site", "opaque-origin"],
)
def test_a_post_without_its_csrf_token_is_refused(api: Api, change: dict[str, str]) -> None:
    csrf = sign_in(api.client, api.secrets["admin"])
    body = {"csrf": csrf, "decision": "approve"}
    headers = {}
    if "csrf" in change:
        if change["csrf"] is None:
            del body["csrf"]
        else:
            body["csrf"] = change["csrf"]
    if "origin" in change:
        headers["origin"] = change["origin"]
    before = len(list(audit.events(engine=api.engine)))
    r = api.client.post(
        "/console/approvals/0f8b1c7e-3d2a-4c55-9d43-6f7a2b1e9c10",
        data=body,
        headers=headers,
        follow_redirects=False,
    )
    assert r.status_code == 403 and "CSRF" in r.text
    r = api.client.post("/console/sign-out", data=body, headers=headers, follow_redirects=False)
    assert r.status_code == 403
    assert len(list(audit.events(engine=api.engine))) == before
    assert api.client.get("/console/", follow_redirects=False).status_code == 200


def test_forms_that_are_not_forms_are_refused(api: Api) -> None:
    csrf = sign_in(api.client, api.secrets["admin"])
    url = "/console/approvals/0f8b1c7e-3d2a-4c55-9d43-6f7a2b1e9c10"
    cases = [
        (json.dumps({"csrf": csrf}).encode(), "application/json"),
        (f"csrf={csrf}&comment=%FF".encode(), "application/x-www-form-urlencoded"),
        (f"csrf={csrf}&comment=".encode() + b"x" * 70_000, "application/x-www-form-urlencoded"),
    ]
    for body, kind in cases:
        r = api.client.post(url, content=body, headers={"content-type": kind})
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("text/html")


def deploy_plan(api: Api, instance: str) -> int:
    stored = manifests.compile_and_store(
        actor="tests", now=STORY, instances=[instance], engine=api.engine
    )
    number = stored.revisions[instance]
    manifests.mark_manifest(instance, number, "deployed", actor="tests", engine=api.engine)
    return number


def test_the_rollback_form_shows_the_security_floor_before_it_starts(api: Api) -> None:
    assert deploy_plan(api, "acme-prod") == 1  # api 2.5.0, past FLEET-2026-0007
    # Then api 2.5.1 comes out, and a critical advisory on 2.5.0 moves acme-prod to r2.
    data = yaml.safe_load(Path(EXAMPLE).read_text())
    data["versions"].append(
        {
            **next(v for v in data["versions"] if v["version"] == "2.5.0"),
            "version": "2.5.1",
            "released_at": "2026-11-20T09:00:00Z",
        }
    )
    data["advisories"].append(
        {
            "id": "TEST-2026-0001",
            "component": "api",
            "severity": "critical",
            "published_at": "2026-11-26T10:00:00Z",
            "summary": f"token leak {HOSTILE}",
            "versions": ["2.5.0"],
        }
    )
    apply_fleet_file(parse_fleet_data(data), actor="tests", engine=api.engine)
    assert deploy_plan(api, "acme-prod") == 2

    csrf = sign_in(api.client, api.secrets["operator"])
    page = api.client.get("/console/instances/acme-prod/rollback", params={"target": "r1"})
    assert page.status_code == 200
    floor = page.text.split('id="rollback-preview"')[1]
    assert "Target: r1" in floor
    assert "TEST-2026-0001" in floor and "refuses this target" in floor
    assert HOSTILE not in page.text
    assert re.search(r'<button type="submit" disabled>Start the rollback', floor)
    # The target a start names must be the one previewed.
    r = api.client.post(
        "/console/instances/acme-prod/rollback",
        data={"csrf": csrf, "target": "r1", "revision": "7", "reason": "why"},
    )
    assert r.status_code == 422 and "preview it again" in r.text
    nothing = api.client.get(
        "/console/instances/initech-dr/rollback", params={"target": "previous"}
    )
    assert "no deployed revision" in nothing.text
    bad = api.client.get(
        "/console/instances/acme-prod/rollback", params={"target": "time", "at": "yesterday"}
    )
    assert bad.status_code == 422


def test_the_audit_page_verifies_filters_and_exports(api: Api) -> None:
    sign_in(api.client, api.secrets["viewer"])
    verdict = api.client.get("/console/audit/verify")
    assert "Chain intact" in verdict.text
    page = api.client.get("/console/audit", params={"subject": "instance:acme-prod"})
    subjects = set(re.findall(r"subject=([^\"&]+)\">([^<]+)</a>", page.text))
    assert subjects and {s for _, s in subjects} == {"instance:acme-prod"}
    everything = api.client.get("/console/audit/export")
    assert everything.headers["content-disposition"].endswith('"fleet-audit.jsonl"')
    lines = [json.loads(line) for line in everything.text.splitlines()]
    assert [e["seq"] for e in lines] == list(range(1, len(lines) + 1))
    from io import StringIO

    out = StringIO()
    audit.export_jsonl(out, engine=api.engine)
    assert everything.text == out.getvalue()
    some = api.client.get("/console/audit/export", params={"action": "token.*"})
    assert {json.loads(line)["action"] for line in some.text.splitlines()} == {"token.create"}
    # A changed event breaks the chain, and the page says where.
    events = table_of(AuditEventRow)
    with transaction(api.engine) as session:
        session.execute(update(events).where(events.c.seq == 3).values(actor="mallory"))
    assert "Chain broken at event 3" in api.client.get("/console/audit/verify").text


def test_the_security_page_lists_open_advisories_and_charts_exposure(api: Api) -> None:
    sign_in(api.client, api.secrets["viewer"])
    page = api.client.get("/console/security")
    assert page.status_code == 200
    critical = page.text.split('class="severity sev-critical"')[1].split("</section>")[0]
    assert "FLEET-2026-0007" in critical and "initech-prod" in critical
    assert "risk-accepted" in critical  # globex-eu
    assert "<svg" in page.text and "polyline" in page.text
    assert api.client.get("/console/security", params={"days": 3}).status_code == 422


@pytest.fixture
def rollback_deployment() -> Iterator[None]:
    """rollback/fleet exists (no worker: a run started stays scheduled)."""
    from prefect.client.orchestration import get_client

    from flows.rollback import rollback

    deployment_id = rollback.to_deployment("fleet").apply()
    yield
    with get_client(sync_client=True) as client:
        client.delete_deployment(deployment_id)


@pytest.mark.usefixtures("rollback_deployment")
def test_a_previewed_rollback_starts_the_flow_as_the_signed_in_principal(api: Api) -> None:
    from fleet.services import runs

    assert deploy_plan(api, "acme-prod") == 1
    data = yaml.safe_load(Path(EXAMPLE).read_text())
    data["versions"].append(
        {
            **next(v for v in data["versions"] if v["version"] == "2.5.0"),
            "version": "2.5.1",
            "released_at": "2026-11-20T09:00:00Z",
        }
    )
    apply_fleet_file(parse_fleet_data(data), actor="tests", engine=api.engine)
    assert deploy_plan(api, "acme-prod") == 2
    csrf = sign_in(api.client, api.secrets["operator"])
    form = api.client.get("/console/instances/acme-prod", params={"target": "previous"})
    assert "Target: r1" in form.text and "the floor holds" in form.text
    body = {"csrf": csrf, "target": "previous", "revision": "1", "reason": f"slow {HOSTILE}"}
    # A risk acceptance is the admin's to give.
    risky = {**body, "risk_reason": "certified build", "risk_until": "2027-01-31T00:00"}
    r = api.client.post("/console/instances/acme-prod/rollback", data=risky)
    assert r.status_code == 403 and "admin" in r.text
    r = api.client.post("/console/instances/acme-prod/rollback", data=body)
    assert r.status_code == 200, r.text
    assert "Rollback of acme-prod started" in r.text and HOSTILE not in r.text
    started, _total = runs.list_runs([runs.ROLLBACK], limit=10, offset=0)
    assert [(s["parameters"]["requested_by"], s["parameters"]["instances"]) for s in started] == [
        ("operator", ["acme-prod"])
    ]
    assert started[0]["parameters"]["reason"] == f"slow {HOSTILE}"
    assert "risk_acceptance" not in started[0]["parameters"]
    api.client.cookies.clear()
    csrf = sign_in(api.client, api.secrets["admin"])
    r = api.client.post("/console/instances/acme-prod/rollback", data={**risky, "csrf": csrf})
    assert r.status_code == 200, r.text
    newest = runs.list_runs([runs.ROLLBACK], limit=1, offset=0)[0][0]["parameters"]
    assert newest["risk_acceptance"] == {
        "by": "admin",
        "reason": "certified build",
        "until": "2027-01-31T00:00:00Z",
    }


@pytest.mark.parametrize(
    "moment",
    [
        "yesterday",
        "2026-13-01T00:00:00Z",
        "0001-01-01T00:00:00+01:00",  # before the first representable UTC instant
        "9999-12-31T23:59:59-01:00",  # after the last
        "2026-11-26T12:00:00\u200bZ",
        "NaN",
        "x" * 300,
    ],
)
def test_times_that_are_no_times_are_refused(api: Api, moment: str) -> None:
    sign_in(api.client, api.secrets["viewer"])
    for params in ({"since": moment}, {"until": moment}):
        r = api.client.get("/console/audit", params=params)
        assert r.status_code == 422, (params, r.text)
        assert api.client.get("/console/audit/export", params=params).status_code == 422
    r = api.client.get(
        "/console/instances/acme-prod/rollback", params={"target": "time", "at": moment[:64]}
    )
    assert r.status_code == 422


def test_a_report_plugs_into_the_instance_page_as_a_panel(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fleet.console import panels

    def report(instance: str, engine: object) -> panels.Panel:
        return panels.Panel(
            "Audit report", ("check", "result"), [("chain", "intact")], text=f"for {HOSTILE}"
        )

    monkeypatch.setattr(panels, "INSTANCE_PANELS", [*panels.INSTANCE_PANELS, report])
    sign_in(api.client, api.secrets["viewer"])
    page = api.client.get("/console/instances/acme-prod").text
    assert "<h2>Audit events</h2>" in page and "<h2>Audit report</h2>" in page
    assert "<td>intact</td>" in page and "for &lt;script&gt;" in page


def test_one_instances_deploy_in_a_run_is_found_in_one_step(api: Api) -> None:
    """The run page and the API's run deployments, filtered by instance: outcome and error."""
    names = ["acme-prod", "hooli-prod", "initech-prod"]
    stored = manifests.compile_and_store(
        actor="tests", now=STORY, instances=names, engine=api.engine
    )
    for name in names:
        deployments.start_deployment(
            name, stored.revisions[name], flow_run_id="run-9", actor="tests", engine=api.engine
        )
    deployments.finish_deployment(
        "hooli-prod",
        flow_run_id="run-9",
        outcome="failed",
        error=HOSTILE,
        actor="t",
        engine=api.engine,
    )
    sign_in(api.client, api.secrets["viewer"])
    whole = api.client.get("/console/runs/run-9")
    assert whole.status_code == 200
    assert "3 deployment records: 1 failed, 2 running" in whole.text
    one = api.client.get("/console/runs/run-9", params={"instance": "hooli-prod"})
    assert "1 deployment record: 1 failed" in one.text
    assert "acme-prod" not in one.text.split("<table")[1]
    assert HOSTILE not in one.text and "&lt;script&gt;" in one.text
    none = api.client.get("/console/runs/run-9", params={"instance": HOSTILE})
    assert none.status_code == 200 and HOSTILE not in none.text

    headers = {"Authorization": f"Bearer {api.secrets['viewer']}"}
    found = api.client.get(
        "/rollouts/run-9/deployments", params={"instance": "hooli-prod"}, headers=headers
    ).json()
    assert found["total"] == 1
    (item,) = found["items"]
    assert (item["instance"], item["outcome"], item["error"]) == ("hooli-prod", "failed", HOSTILE)
    every = api.client.get("/rollouts/run-9/deployments", headers=headers).json()
    assert [i["instance"] for i in every["items"]] == sorted(names)
    other = api.client.get("/rollouts/run-0/deployments", headers=headers).json()
    assert other["total"] == 0


def test_the_instance_page_shows_its_audit_report(api: Api) -> None:
    from fleet.services.deployments import finish_deployment, record_approval, start_deployment
    from fleet.services.manifests import compile_and_store, mark_manifest

    run = "44444444-4444-4444-8444-444444444444"
    sign_in(api.client, api.secrets["viewer"])
    assert (
        "Nothing Fleet deployed is running"
        in api.client.get("/console/instances/vandelay-prod").text
    )
    stored = compile_and_store(
        actor="ops", instances=["vandelay-prod"], flow_run_id=run, engine=api.engine
    )
    number = stored.revisions["vandelay-prod"]
    record_approval(
        "vandelay-prod",
        approver="carol",
        decision="approve",
        verified=True,
        flow_run_id=run,
        manifest_number=number,
        engine=api.engine,
    )
    start_deployment("vandelay-prod", number, flow_run_id=run, actor="ops", engine=api.engine)
    mark_manifest("vandelay-prod", number, "deployed", actor="ops", engine=api.engine)
    finish_deployment(
        "vandelay-prod", flow_run_id=run, outcome="succeeded", actor="ops", engine=api.engine
    )
    page = api.client.get("/console/instances/vandelay-prod").text
    assert "<h2>Audit report (now)</h2>" in page
    assert f"<td>{run}</td>" in page
    assert "approve (verified)" in page and "carol at " in page
    assert "audit chain OK" in page
