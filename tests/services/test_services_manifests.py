"""Plans stored as manifest revisions; status, deployments, approvals, rollback, history."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from fleet.core.errors import ConflictError, NoRollbackTarget, NotFoundError, PermissionDenied
from fleet.core.fleetfile import FleetFile, parse_fleet_data, parse_fleet_text
from fleet.core.manifests import ManifestStatus
from fleet.core.plan import Decision, compile_plan
from fleet.services import audit
from fleet.services.deployments import (
    deployments_of,
    finish_deployment,
    record_approval,
    start_deployment,
)
from fleet.services.fleet import apply_fleet_file, load_state
from fleet.services.manifests import compile_and_store, history, mark_manifest, rollback
from tests.factories import NOW

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fleet.yaml"
STORED = {Decision.DEPLOY, Decision.NEEDS_APPROVAL, Decision.ENFORCE_SECURITY}


@pytest.fixture
def fleet(engine: Engine) -> Engine:
    apply_fleet_file(parse_fleet_text(EXAMPLE.read_text()), actor="ops", now=NOW, engine=engine)
    return engine


def _deploy(engine: Engine, instance: str, number: int, at: datetime, run: str) -> None:
    start_deployment(instance, number, flow_run_id=run, actor="deployer", now=at, engine=engine)
    mark_manifest(
        instance, number, "deployed", actor="deployer", now=at, flow_run_id=run, engine=engine
    )
    finish_deployment(
        instance, flow_run_id=run, outcome="succeeded", actor="deployer", now=at, engine=engine
    )


def _small(*versions: str) -> FleetFile:
    return parse_fleet_data(
        {
            "format": 1,
            "components": ["api"],
            "versions": [
                {"component": "api", "version": v, "released_at": "2026-01-01T00:00:00Z"}
                for v in versions
            ],
            "channels": [{"name": "stable", "policy": "auto-update"}],
            "instances": [
                {"name": "acme", "customer": "Acme", "channel": "stable", "current": {"api": "1.0"}}
            ],
        }
    )


def test_a_stored_plan_has_a_revision_for_each_instance_it_changes(fleet: Engine) -> None:
    stored = compile_and_store(actor="planner", now=NOW, flow_run_id="run-1", engine=fleet)
    changing = {i.instance for i in stored.plan.instances if i.decision in STORED}
    assert changing and set(stored.revisions) == changing == set(stored.new)
    assert set(stored.revisions.values()) == {1}
    # Same plan as the core computes from the same state.
    expected = compile_plan(load_state(engine=fleet), NOW)
    assert stored.plan.to_json() == expected.to_json()
    name = sorted(changing)[0]
    [entry] = history(name, engine=fleet)
    item = next(i for i in stored.plan.instances if i.instance == name)
    assert entry.revision.manifest == item.manifest
    assert entry.hash == item.manifest.hash  # type: ignore[union-attr]
    assert entry.revision.status is ManifestStatus.COMPILED
    assert entry.flow_run_id == "run-1" and entry.decision == item.decision.value
    assert {
        c: (str(p.from_version), str(p.to_version)) for p in item.changes for c in [p.component]
    } == dict(entry.changes)
    assert entry.revision.explanation == {c.component: c.reason for c in item.components}
    events = list(audit.events(subject=f"instance:{name}", engine=fleet))
    assert events[-1].action == "manifest.compile" and events[-1].flow_run_id == "run-1"

    # Planning again before anything is deployed reuses the pending revisions.
    count = audit.verify(engine=fleet).checked
    again = compile_and_store(actor="planner", now=NOW, engine=fleet)
    assert again.revisions == stored.revisions and again.new == ()
    assert audit.verify(engine=fleet).checked == count


def test_deploy_supersede_rollback(engine: Engine) -> None:
    t1, t2, t3 = NOW, NOW + timedelta(hours=1), NOW + timedelta(hours=2)
    apply_fleet_file(_small("1.0", "1.1"), actor="ops", now=t1, engine=engine)
    assert compile_and_store(actor="planner", now=t1, engine=engine).revisions == {"acme": 1}
    _deploy(engine, "acme", 1, t1, "run-a")
    [acme] = load_state(engine=engine).instances
    assert {c: str(v) for c, v in acme.current.items()} == {"api": "1.1"}

    # The file still says api 1.0: what was deployed wins, and the result says so.
    newer = apply_fleet_file(_small("1.0", "1.1", "1.2"), actor="ops", now=t2, engine=engine)
    assert [c.subject for c in newer.changes] == ["version:api@1.2"]
    assert newer.notes and "runs revision 1" in newer.notes[0]
    assert compile_and_store(actor="planner", now=t2, engine=engine).revisions == {"acme": 2}
    _deploy(engine, "acme", 2, t2, "run-b")
    entries = {h.revision.number: h for h in history("acme", engine=engine)}
    assert entries[1].revision.status is ManifestStatus.SUPERSEDED
    assert entries[2].revision.status is ManifestStatus.DEPLOYED
    assert entries[2].revision.parent == 1
    assert dict(entries[2].changes) == {"api": ("1.1", "1.2")}

    back = rollback("acme", "previous", actor="oncall", now=t3, flow_run_id="run-c", engine=engine)
    assert (back.number, back.plan.rollback_of) == (3, 1)
    _deploy(engine, "acme", 3, t3, "run-c")
    entries = {h.revision.number: h for h in history("acme", engine=engine)}
    assert entries[2].revision.status is ManifestStatus.ROLLED_BACK
    assert entries[3].revision.rollback_of == 1
    assert entries[3].revision.manifest == entries[1].revision.manifest
    assert dict(entries[3].changes) == {"api": ("1.2", "1.1")}
    [acme] = load_state(engine=engine).instances
    assert str(acme.current["api"]) == "1.1"
    # A plan now would move it forward again: a new revision, number 4.
    assert compile_and_store(actor="planner", now=t3, engine=engine).revisions == {"acme": 4}
    assert [d.outcome for d in deployments_of("acme", engine=engine)] == ["succeeded"] * 3
    assert audit.verify(engine=engine).ok


def test_a_deployment_record_is_closed_once_and_only_when_open(engine: Engine) -> None:
    apply_fleet_file(_small("1.0", "1.1"), actor="ops", now=NOW, engine=engine)
    compile_and_store(actor="planner", now=NOW, engine=engine)
    start_deployment("acme", 1, flow_run_id="run-a", actor="deployer", now=NOW, engine=engine)
    with pytest.raises(ConflictError, match="already has a deployment record for run run-a"):
        start_deployment("acme", 1, flow_run_id="run-a", actor="deployer", now=NOW, engine=engine)
    with pytest.raises(NotFoundError, match="No deployment record of 'acme' for run 'run-b'"):
        finish_deployment(
            "acme", flow_run_id="run-b", outcome="failed", actor="deployer", now=NOW, engine=engine
        )
    finish_deployment(
        "acme", flow_run_id="run-a", outcome="failed", actor="deployer", now=NOW, engine=engine
    )
    events = audit.verify(engine=engine).checked
    with pytest.raises(ConflictError, match="acme run run-a already finished \\(failed\\)"):
        finish_deployment(
            "acme", flow_run_id="run-a", outcome="succeeded", actor="d", now=NOW, engine=engine
        )
    [record] = deployments_of("acme", engine=engine)
    assert (record.outcome, record.finished_at) == ("failed", NOW)
    assert audit.verify(engine=engine).checked == events  # the refusal wrote nothing
    [event] = [
        e
        for e in audit.events(subject="instance:acme", engine=engine)
        if e.action == "deployment.failed"
    ]
    assert event.details["revision"] == 1


def test_status_moves_only_forward(fleet: Engine) -> None:
    stored = compile_and_store(actor="planner", now=NOW, engine=fleet)
    name, number = next(iter(stored.revisions.items()))
    mark_manifest(name, number, "failed", actor="deployer", now=NOW, engine=fleet)
    with pytest.raises(ConflictError, match="failed: it cannot become deployed"):
        mark_manifest(name, number, "deployed", actor="deployer", now=NOW, engine=fleet)
    with pytest.raises(NotFoundError, match="revision 99"):
        mark_manifest(name, 99, "deployed", actor="deployer", now=NOW, engine=fleet)
    with pytest.raises(NoRollbackTarget):
        rollback(name, "previous", actor="oncall", now=NOW, engine=fleet)


def test_approvals_are_recorded_with_four_eyes(fleet: Engine) -> None:
    stored = compile_and_store(actor="planner", now=NOW, engine=fleet)
    name, number = next(iter(stored.revisions.items()))
    start_deployment(name, number, flow_run_id="run-9", actor="alice", now=NOW, engine=fleet)
    with pytest.raises(PermissionDenied, match="four eyes"):
        record_approval(
            name,
            approver="alice",
            decision="approve",
            flow_run_id="run-9",
            manifest_number=number,
            now=NOW,
            engine=fleet,
        )
    record_approval(
        name,
        approver="bob",
        decision="approve",
        comment="ok",
        verified=True,
        flow_run_id="run-9",
        manifest_number=number,
        now=NOW,
        engine=fleet,
    )
    record_approval(
        name,
        approver="carol",
        decision="approve",
        comment="typed in the UI",
        flow_run_id="run-9",
        manifest_number=number,
        now=NOW,
        engine=fleet,
    )
    finish_deployment(
        name,
        flow_run_id="run-9",
        outcome="failed",
        error="health check failed",
        actor="alice",
        now=NOW + timedelta(minutes=5),
        engine=fleet,
    )
    [record] = deployments_of(name, engine=fleet)
    assert (record.outcome, record.error, record.manifest_number) == (
        "failed",
        "health check failed",
        number,
    )
    assert [(a.approver, a.verified) for a in record.approvals] == [("bob", True), ("carol", False)]
    assert record.to_json()["finished_at"] == "2026-11-26T12:05:00Z"
    events = list(audit.events(subject=f"instance:{name}", engine=fleet))
    assert [e.action for e in events[-4:]] == [
        "deployment.start",
        "approval.approve",
        "approval.approve",
        "deployment.failed",
    ]
    assert all(e.flow_run_id == "run-9" for e in events[-4:])
