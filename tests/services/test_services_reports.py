"""`fleet audit report`: the example fleet after an approved rollout and an enforced fix."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import Engine, update

from fleet.cli.main import main
from fleet.core.approvals import Request
from fleet.core.errors import NotFoundError
from fleet.core.fleetfile import parse_fleet_data
from fleet.core.plan import Decision
from fleet.db.engine import transaction
from fleet.db.models import AuditEventRow, table_of
from fleet.services.advisories import accept_risk, import_osv
from fleet.services.approvals import open_requests
from fleet.services.deployments import finish_deployment, record_approval, start_deployment
from fleet.services.fleet import apply_fleet_file
from fleet.services.manifests import compile_and_store, mark_manifest
from fleet.services.reports import audit_report
from tests.db.support import cli_db  # noqa: F401  (fixture)
from tests.factories import NOW

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fleet.yaml"
INSTANCE = "vandelay-prod"
APPROVED_RUN = "11111111-1111-4111-8111-111111111111"
FIX_RUN = "22222222-2222-4222-8222-222222222222"
PUBLISHED = NOW + timedelta(days=1)
CRITICAL = {
    "id": "FLEET-2026-0099",
    "published": "2026-11-27T12:00:00Z",
    "modified": "2026-11-27T12:00:00Z",
    "summary": "worker 2.3.1 leaks job payloads",
    "affected": [
        {
            "package": {"ecosystem": "PyPI", "name": "worker"},
            "ranges": [
                {"type": "ECOSYSTEM", "events": [{"introduced": "2.3.1"}, {"fixed": "2.3.2"}]}
            ],
            "database_specific": {"severity": "CRITICAL"},
        }
    ],
}


def _example(extra_worker: bool = False) -> dict[str, object]:
    data = yaml.safe_load(EXAMPLE.read_text())
    if extra_worker:
        base = next(
            v
            for v in data["versions"]
            if v["component"] == "worker" and str(v["version"]) == "2.3.1"
        )
        data["versions"].append({**base, "version": "2.3.2", "released_at": "2026-11-27T13:00:00Z"})
    return data  # type: ignore[no-any-return]


def _deploy(engine: Engine, number: int, run: str, at: datetime) -> None:
    who = "scheduler"
    start_deployment(INSTANCE, number, flow_run_id=run, actor=who, now=at, engine=engine)
    mark_manifest(INSTANCE, number, "deployed", actor=who, now=at, flow_run_id=run, engine=engine)
    finish_deployment(
        INSTANCE, flow_run_id=run, outcome="succeeded", actor=who, now=at, engine=engine
    )


@pytest.fixture
def story(engine: Engine) -> Engine:
    """vandelay-prod (LTS, two approvals): revision 1 approved by carol with an API token
    and by dave typing his name into the form, deployed; then a critical advisory on the
    worker it runs, and revision 2, the enforced fix, deployed by another run."""
    apply_fleet_file(parse_fleet_data(_example()), actor="ops", now=NOW, engine=engine)
    stored = compile_and_store(
        actor="scheduler", now=NOW, instances=[INSTANCE], flow_run_id=APPROVED_RUN, engine=engine
    )
    number = stored.revisions[INSTANCE]
    item = next(i for i in stored.plan.instances if i.instance == INSTANCE)
    assert item.manifest is not None
    digest = item.manifest.hash
    open_requests(
        [Request(INSTANCE, number, digest, 2)],
        requested_by="scheduler",
        deadlines={INSTANCE: NOW + timedelta(days=3)},
        flow_run_id=APPROVED_RUN,
        now=NOW,
        engine=engine,
    )
    for who, verified, minutes in (("carol", True, 10), ("Dave ", False, 20)):
        record_approval(
            INSTANCE,
            approver=who,
            decision="approve",
            comment=f"ok from {who.strip()}",
            verified=verified,
            flow_run_id=APPROVED_RUN,
            manifest_number=number,
            manifest_hash=digest,
            via="api" if verified else "form",
            now=NOW + timedelta(minutes=minutes),
            engine=engine,
        )
    _deploy(engine, number, APPROVED_RUN, NOW + timedelta(minutes=30))

    apply_fleet_file(
        parse_fleet_data(_example(extra_worker=True)), actor="ops", now=PUBLISHED, engine=engine
    )
    import_osv(CRITICAL, {"worker": "worker"}, actor="security", now=PUBLISHED, engine=engine)
    fix_at = PUBLISHED + timedelta(hours=2)
    fixed = compile_and_store(
        actor="scheduler", now=fix_at, instances=[INSTANCE], flow_run_id=FIX_RUN, engine=engine
    )
    fix_item = next(i for i in fixed.plan.instances if i.instance == INSTANCE)
    assert fix_item.decision is Decision.ENFORCE_SECURITY
    record_approval(
        INSTANCE,
        approver="policy",
        decision="waived",
        comment="enforced security fix",
        flow_run_id=FIX_RUN,
        manifest_number=fixed.revisions[INSTANCE],
        via="policy",
        now=fix_at,
        engine=engine,
    )
    _deploy(engine, fixed.revisions[INSTANCE], FIX_RUN, fix_at + timedelta(minutes=5))
    return engine


def test_the_approved_revision_names_both_approvers_and_its_run(story: Engine) -> None:
    report = audit_report(
        INSTANCE,
        at=NOW + timedelta(hours=2),
        prefect_ui="http://prefect.example:4200",
        engine=story,
    )
    assert report.revision is not None and report.revision.number == 1
    assert report.revision.components["worker"] == "2.3.1"
    assert [(a.approver, a.identity()) for a in report.approvals] == [
        ("carol", "verified"),
        ("Dave", "self-declared"),
    ]
    assert all(a.shown_hash == report.revision.hash for a in report.approvals)
    assert report.approvals_required == 2
    assert report.deployed_by is not None and report.deployed_by.flow_run_id == APPROVED_RUN
    assert report.deployed_by.link == f"http://prefect.example:4200/runs/flow-run/{APPROVED_RUN}"
    assert report.planned_by is not None and report.planned_by.flow_run_id == APPROVED_RUN
    # The critical advisory was published the next day: not open yet at this time.
    assert report.advisories == ()
    actions = [e.action for e in report.events]
    for action in ("manifest.compile", "approval.request", "approval.approve", "manifest.deployed"):
        assert action in actions
    assert report.chain is not None and report.chain.ok
    assert report.chain.checked == max(e.seq for e in report.events)


def test_the_open_advisory_then_the_enforced_fix(story: Engine) -> None:
    before_fix = audit_report(INSTANCE, at=PUBLISHED + timedelta(hours=1), engine=story)
    assert before_fix.revision is not None and before_fix.revision.number == 1
    assert [(f.advisory.id, f.enforced, f.open) for f in before_fix.open_advisories] == [
        ("FLEET-2026-0099", True, True)
    ]
    after_fix = audit_report(INSTANCE, at=PUBLISHED + timedelta(hours=3), engine=story)
    assert after_fix.revision is not None and after_fix.revision.number == 2
    assert after_fix.revision.components["worker"] == "2.3.2"
    assert after_fix.open_advisories == ()
    assert after_fix.deployed_by is not None and after_fix.deployed_by.flow_run_id == FIX_RUN
    assert [(a.approver, a.decision) for a in after_fix.approvals] == [("policy", "waived")]


def test_a_risk_acceptance_counts_only_from_when_it_was_granted(story: Engine) -> None:
    granted = PUBLISHED + timedelta(minutes=30)
    accept_risk(
        INSTANCE,
        "FLEET-2026-0099",
        reason="worker is not exposed to tenants",
        until=PUBLISHED + timedelta(days=5),
        actor="ciso",
        now=granted,
        engine=story,
    )
    early = audit_report(INSTANCE, at=granted - timedelta(minutes=1), engine=story)
    assert [f.open for f in early.advisories] == [True]
    late = audit_report(INSTANCE, at=granted + timedelta(minutes=1), engine=story)
    assert [f.acceptance.by if f.acceptance else None for f in late.advisories] == ["ciso"]
    assert late.open_advisories == ()
    assert any(e.action == "risk.accept" for e in late.events)


def test_before_anything_ran_and_an_unknown_instance(story: Engine) -> None:
    assert audit_report(INSTANCE, at=NOW - timedelta(days=1), engine=story).revision is None
    with pytest.raises(NotFoundError, match="'nope'"):
        audit_report("nope", at=NOW, engine=story)


def test_an_edited_event_shows_in_the_report(story: Engine) -> None:
    audit = table_of(AuditEventRow)
    with transaction(story) as session:
        session.execute(update(audit).where(audit.c.seq == 2).values(actor="mallory"))
    report = audit_report(INSTANCE, at=NOW + timedelta(hours=2), engine=story)
    assert report.chain is not None and not report.chain.ok and report.chain.broken_seq == 2


def test_cli_formats(
    story: Engine,
    cli_db: str,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    at = "2026-11-26T14:00:00Z"
    assert main(["audit", "report", INSTANCE, "--at", at, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["revision"]["number"] == 1
    assert [a["identity"] for a in data["approvals"]] == ["verified", "self-declared"]
    assert main(["audit", "report", INSTANCE, "--at", at, "--format", "markdown"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"# Audit report: {INSTANCE} at 2026-11-26T14:00:00Z")
    assert "| carol | approve | verified |" in text and "| Dave | approve | self-declared |" in text
    assert main(["audit", "report", INSTANCE, "--at", at]) == 0
    assert "carol" in capsys.readouterr().out
    assert main(["audit", "report", INSTANCE, "--at", "yesterday"]) == 2
    assert "'yesterday'" in capsys.readouterr().err
