"""The rollback flow on a real Prefect server with real agents."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from prefect.flow_runs import resume_flow_run

from fleet.core.durations import isoformat
from fleet.core.errors import InputError, RollbackRefused
from fleet.services import audit, deployments, manifests
from fleet.settings import get_settings
from flows.compile_and_deploy import compile_and_deploy
from flows.rollback import RiskAcceptanceInput, rollback
from tests.flows.runs import FAST, form_description, paused_run, run_in_thread
from tests.flows.support import build_world

pytestmark = pytest.mark.usefixtures("prefect_server", "fleet_db")

V11 = {"api": "1.1.0", "web": "1.1.0"}
V12 = {"api": "1.2.0", "web": "1.2.0"}


def critical_in_1_1() -> dict[str, object]:
    """A critical advisory, published an hour ago, on api 1.1.x (fixed in 1.2.0)."""
    return {
        "id": "FLEET-2026-0009",
        "component": "api",
        "severity": "critical",
        "published_at": isoformat(datetime.now(UTC) - timedelta(hours=1)),
        "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "1.1.0"}, {"fixed": "1.2.0"}]}],
    }


def test_rollback_to_a_time_restores_that_manifest_and_holds_the_security_floor(
    tmp_path, start_agent
):
    world = build_world(tmp_path, start_agent, [("a1", "auto", None)])
    compile_and_deploy(requested_by="ops", strategy=FAST)  # r1: 1.1.0
    time.sleep(0.05)
    between = datetime.now(UTC)
    time.sleep(0.05)
    world.publish("api", "1.2.0")
    world.publish("web", "1.2.0")
    compile_and_deploy(requested_by="ops", strategy=FAST)  # r2: 1.2.0
    assert world.running("a1") == V12

    report = rollback(
        instances=["a1"], target=isoformat(between), reason="1.2 breaks logins", strategy=FAST
    )
    assert report["outcomes"] == {"a1": "succeeded"}
    history = manifests.history("a1")
    r1, r3 = history[0].revision, history[-1].revision
    assert (r3.number, r3.rollback_of) == (3, 1)
    assert r3.manifest == r1.manifest and history[-1].hash == history[0].hash
    assert world.running("a1") == V11
    requests = [e for e in audit.events() if e.action == "rollback.request"]
    assert requests[0].details["reason"] == "1.2 breaks logins"

    compile_and_deploy(requested_by="ops", strategy=FAST)  # r4: 1.2.0 again
    world.data["advisories"] = [critical_in_1_1()]
    world.apply()
    with pytest.raises(RollbackRefused, match="FLEET-2026-0009"):
        rollback(instances=["a1"], reason="try the old one", strategy=FAST)
    assert world.running("a1") == V12
    assert len(manifests.history("a1")) == 4  # nothing stored

    acceptance = RiskAcceptanceInput(
        by="ciso", reason="WAF blocks the exploit", until=datetime.now(UTC) + timedelta(days=1)
    )
    report = rollback(
        instances=["a1"],
        reason="try the old one",
        risk_acceptance=acceptance,
        strategy=FAST,
    )
    assert report["outcomes"] == {"a1": "succeeded"}
    assert world.running("a1") == V11
    last = manifests.history("a1")[-1]
    assert last.revision.rollback_of == 3
    assert any("risk accepted by ciso" in w for w in last.warnings)
    accepted = [e for e in audit.events() if e.action == "risk.accept"]
    assert [e.actor for e in accepted] == ["ciso"]
    assert audit.verify().ok


def test_rollback_of_a_manual_approval_instance_waits_for_one_approver(
    tmp_path, start_agent, monkeypatch
):
    monkeypatch.setenv("FLEET_CONSOLE_URL", "https://fleet.example/")
    get_settings.cache_clear()
    world = build_world(tmp_path, start_agent, [("a1", "auto", None)])
    compile_and_deploy(requested_by="ops", strategy=FAST)  # r1: 1.1.0
    world.publish("api", "1.2.0")
    world.publish("web", "1.2.0")
    compile_and_deploy(requested_by="ops", strategy=FAST)  # r2: 1.2.0
    world.data["instances"][0]["policy_override"] = "manual-approval"
    world.apply()

    thread, box = run_in_thread(
        rollback, instances=["a1"], reason="1.2 is slow", requested_by="alice", strategy=FAST
    )
    run_id = paused_run("rollback")
    text = form_description(run_id)
    assert "1.2 is slow" in text
    # The form sends people to the console, where an approval is verified.
    assert f"[Fleet's console](https://fleet.example/console/approvals/{run_id})" in text
    assert world.running("a1") == V12
    resume_flow_run(run_id, run_input={"decision": "approve", "approver": "bob"})
    thread.join(60)
    assert "error" not in box, box.get("error")
    assert box["result"]["outcomes"] == {"a1": "succeeded"}
    assert world.running("a1") == V11
    (given,) = deployments.approvals_for("a1", flow_run_id=run_id)
    assert (given.approver, given.decision) == ("bob", "approve")


@pytest.mark.parametrize(
    ("by", "reason"),
    [
        ("\u0441iso", "WAF blocks the exploit"),  # a Cyrillic look-alike letter
        ("ciso\u200b", "WAF blocks the exploit"),
        ("ciso", "  "),
    ],
)
def test_a_bad_risk_acceptance_is_refused_before_anything_is_written(
    tmp_path, start_agent, by, reason
):
    """It was refused by the first instance that needed it, after the run had
    recorded its request (and the rollbacks of the instances before that one)."""
    world = build_world(tmp_path, start_agent, [("a1", "auto", None)])
    compile_and_deploy(requested_by="ops", strategy=FAST)  # r1: 1.1.0
    world.publish("api", "1.2.0")
    world.publish("web", "1.2.0")
    compile_and_deploy(requested_by="ops", strategy=FAST)  # r2: 1.2.0
    world.data["advisories"] = [critical_in_1_1()]
    world.apply()
    before = [(e.seq, e.action) for e in audit.events()]
    acceptance = RiskAcceptanceInput(
        by=by, reason=reason, until=datetime.now(UTC) + timedelta(days=1)
    )
    with pytest.raises(InputError, match="Invalid risk acceptance"):
        rollback(
            instances=["a1"], reason="try the old one", risk_acceptance=acceptance, strategy=FAST
        )
    assert [(e.seq, e.action) for e in audit.events()] == before
    assert len(manifests.history("a1")) == 2
    assert world.running("a1") == V12
