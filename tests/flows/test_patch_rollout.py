"""patch-rollout and compliance-scan on a real Prefect server with real agents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.flow_runs import resume_flow_run

from fleet.core.durations import isoformat
from fleet.services import advisories, audit, deployments, manifests
from flows.compliance_scan import compliance_scan
from flows.patch_rollout import patch_rollout
from tests.flows.runs import FAST, form_description, paused_run, run_in_thread
from tests.flows.support import World, build_world

pytestmark = pytest.mark.usefixtures("prefect_server", "fleet_db")

ADVISORY = "FLEET-2026-0001"
FIXED = {"api": "1.0.1", "web": "1.0.0"}


def advise(world: World, severity: str, published_at: str = "2026-11-01T00:00:00Z") -> None:
    world.data["advisories"] = [
        {
            "id": ADVISORY,
            "component": "api",
            "severity": severity,
            "published_at": published_at,
            "ranges": [
                {"type": "ECOSYSTEM", "events": [{"introduced": "1.0.0"}, {"fixed": "1.0.1"}]}
            ],
        }
    ]
    world.apply()


def waivers(instance: str) -> list[Any]:
    return [a for a in deployments.approvals_for(instance) if a.decision == "waived"]


def test_critical_advisory_patches_frozen_manual_and_auto_honours_risk_acceptance(
    tmp_path, start_agent
):
    world = build_world(
        tmp_path,
        start_agent,
        [
            ("a1", "auto", None),
            ("m1", "manual", None),
            ("f1", "frozen", None),
            ("r1", "manual", None),
            ("u1", "auto", None),
        ],
        versions=("1.0.0", "1.0.1", "1.1.0"),
        approvals_required=1,
    )
    world.data["instances"][-1]["current"] = {"api": "1.1.0", "web": "1.1.0"}  # unaffected
    world.data["pins"] = [
        {
            "scope": "global",
            "component": "api",
            "spec": "==1.0.0",
            "reason": "hold api",
            "author": "ops",
            "created_at": "2026-01-01T00:00:00Z",
        }
    ]
    now = datetime.now(UTC)
    advise(world, "critical", published_at=isoformat(now - timedelta(hours=1)))
    advisories.accept_risk(
        "r1", ADVISORY, reason="WAF rule in place", until=now + timedelta(hours=1), actor="ciso"
    )

    report = patch_rollout(advisory=ADVISORY, requested_by="secops", strategy=FAST)
    assert report["outcomes"] == {"a1": "succeeded", "m1": "succeeded", "f1": "succeeded"}
    for name in ("a1", "m1", "f1"):
        assert world.running(name) == FIXED, name  # the minimal fix, nothing else moves
        explanation = manifests.history(name)[-1].revision.explanation
        assert ADVISORY in explanation["api"] and "pin" in explanation["api"], explanation
        (waived,) = waivers(name)
        assert waived.approver == "security-policy" and ADVISORY in waived.comment
    assert "risk accepted by ciso" in report["skipped"]["r1"]  # type: ignore[index]
    assert world.applies("r1") == [] and world.applies("u1") == []
    assert report["remaining"] == ["r1"]

    later = now + timedelta(hours=2)  # the risk acceptance has ended
    scan = compliance_scan(at=later)
    assert {(e["event"], e["instance"]) for e in scan["events"]} == {  # type: ignore[union-attr]
        ("fleet.advisory.enforced", "r1")
    }
    assert scan["patch"]["outcomes"] == {"r1": "succeeded"}  # type: ignore[index]
    assert world.running("r1") == FIXED
    assert world.applies("u1") == []
    assert compliance_scan(at=later, enforce=False)["affected"] == []
    assert audit.verify().ok


def test_medium_advisory_waits_for_approval_before_its_deadline_and_is_enforced_after(
    tmp_path, start_agent
):
    world = build_world(
        tmp_path,
        start_agent,
        [("m1", "manual", None), ("a1", "auto", None)],
        versions=("1.0.0", "1.0.1", "1.1.0"),
        approvals_required=1,
    )
    world.data["channels"][0]["maintenance_window"] = {"cron": "0 2 * * *", "duration": "1h"}
    advise(world, "medium")  # deadline 2026-12-01
    before = datetime(2026, 11, 2, tzinfo=UTC)
    thread, box = run_in_thread(
        patch_rollout, advisory=ADVISORY, requested_by="secops", strategy=FAST, at=before
    )
    run_id = paused_run("patch-rollout")
    text = form_description(run_id)
    assert ADVISORY in text and "2026-12-01T00:00:00Z" in text
    assert world.applies("m1") == []
    resume_flow_run(run_id, run_input={"decision": "reject", "approver": "bob", "comment": "later"})
    thread.join(60)
    assert "error" not in box, box.get("error")
    assert box["result"]["outcomes"] == {"m1": "skipped"}
    assert world.applies("m1") == [] and waivers("m1") == []
    assert "maintenance window" in box["result"]["waiting"]["a1"]  # closed at midnight
    assert world.applies("a1") == []

    after = datetime(2026, 12, 2, tzinfo=UTC)
    report = patch_rollout(advisory=ADVISORY, requested_by="secops", strategy=FAST, at=after)
    assert report["outcomes"] == {"m1": "succeeded", "a1": "succeeded"}  # window or not
    assert world.running("m1") == FIXED
    assert "overdue" in waivers("m1")[0].comment


def test_compliance_scan_from_a_deployment_starts_the_patch_deployment_without_waiting(
    tmp_path, start_agent, monkeypatch
):
    import flows.compliance_scan as scan_module

    world = build_world(tmp_path, start_agent, [("a1", "auto", None)])
    now = datetime.now(UTC)
    advise(world, "critical", published_at=isoformat(now - timedelta(hours=1)))
    patch_rollout.to_deployment("fleet").apply()
    monkeypatch.setattr(scan_module, "deployment", SimpleNamespace(id="a-deployment"))

    report = compliance_scan(at=now)
    assert report["events"] == [
        {"event": "fleet.advisory.enforced", "instance": "a1", "advisory": ADVISORY}
    ]
    with get_client(sync_client=True) as client:
        started = client.read_flow_run(UUID(str(report["patch"])))
        patch = client.read_deployment_by_name("patch-rollout/fleet")
    assert started.deployment_id == patch.id
    assert started.parameters["requested_by"] == "compliance-scan"
    assert started.state is not None and started.state.is_scheduled()  # not waited for
    assert world.applies("a1") == []


def test_an_advisory_without_a_fix_is_reported_as_no_fix_and_blocks_nothing(tmp_path, start_agent):
    world = build_world(
        tmp_path, start_agent, [("f1", "frozen", None)], versions=("1.0.0", "1.0.1")
    )
    world.data["advisories"] = [
        {
            "id": "FLEET-2026-0099",
            "component": "api",
            "severity": "critical",
            "published_at": isoformat(datetime.now(UTC) - timedelta(hours=1)),
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}],
        }
    ]
    world.apply()
    scan = compliance_scan()
    assert [(e["event"], e["instance"]) for e in scan["events"]] == [  # type: ignore[union-attr]
        ("fleet.advisory.no-fix", "f1")
    ]
    assert scan["patch"] is None  # nothing to enforce: no patch rollout starts
    assert world.applies("f1") == []
