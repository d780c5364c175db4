"""auto-update and drift-check on a real Prefect server with real agents."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from blocks.targets import load_target
from fleet.agent.models import Manifest
from fleet.services import audit, drift, locks, manifests, rollouts
from flows.auto_update import auto_update
from flows.compile_and_deploy import compile_and_deploy
from flows.drift_check import drift_check
from tests.flows.runs import FAST
from tests.flows.support import build_world

pytestmark = pytest.mark.usefixtures("prefect_server", "fleet_db")


def test_auto_update_respects_maintenance_windows(tmp_path, start_agent):
    world = build_world(tmp_path, start_agent, [("a1", "auto", None), ("m1", "manual", None)])
    world.data["channels"][0]["maintenance_window"] = {
        "cron": "0 2 * * *",
        "duration": "2h",
        "timezone": "Europe/Berlin",
    }
    world.apply()

    closed = auto_update(at=datetime(2026, 11, 26, 0, 30, tzinfo=UTC), strategy=FAST)
    assert closed == {"open": [], "closed": ["a1"], "rollout": None}
    assert world.applies("a1") == []

    opened = auto_update(at=datetime(2026, 11, 26, 1, 30, tzinfo=UTC), strategy=FAST)  # 02:30 CET
    assert opened["open"] == ["a1"]
    assert opened["rollout"]["outcomes"] == {"a1": "succeeded"}  # type: ignore[index]
    assert world.running("a1") == {"api": "1.1.0", "web": "1.1.0"}
    assert world.applies("m1") == []


def test_drift_check_finds_a_change_behind_fleets_back_and_repairs_it(tmp_path, start_agent):
    world = build_world(tmp_path, start_agent, [("a1", "auto", None), ("a2", "auto", None)])
    compile_and_deploy(requested_by="ops", strategy=FAST)
    assert drift_check()["drifted"] == {}

    web = next(
        v for v in world.data["versions"] if (v["component"], v["version"]) == ("web", "1.0.0")
    )
    api = next(
        v for v in world.data["versions"] if (v["component"], v["version"]) == ("api", "1.1.0")
    )
    target = load_target("a1")
    try:  # someone installs an old web by hand
        target.apply(
            Manifest.model_validate(
                {
                    "instance": "a1",
                    "revision": 99,
                    "manifest_hash": "abcdef0123456789",
                    "components": {
                        "api": {"version": "1.1.0", **api["artifact"]},
                        "web": {"version": "1.0.0", **web["artifact"]},
                    },
                }
            )
        )
    finally:
        target.close()  # type: ignore[attr-defined]

    report = drift_check()
    assert report["drifted"] == {"a1": "web recorded 1.1.0, running 1.0.0"}
    # Fleet keeps the finding (the console's matrix shows it), audited once.
    found = drift.drifted()
    assert list(found) == ["a1"] and found["a1"].components == {"web"}
    assert found["a1"].differences == (("web", "1.1.0", "1.0.0"),)
    repaired = drift_check(repair=True, strategy=FAST)
    assert repaired["repaired"] == {"a1": "succeeded"}
    assert drift.drifted() == {}  # deployed since the finding
    assert world.running("a1") == {"api": "1.1.0", "web": "1.1.0"}
    assert drift_check()["drifted"] == {}
    actions = [(e.action, e.subject) for e in audit.events() if "drift" in e.action]
    assert actions == [
        ("instance.drift", "instance:a1"),
        ("instance.drift-resolved", "instance:a1"),
    ]
    history = manifests.history("a1")
    assert [h.decision for h in history] == ["deploy", "repair"]
    assert [h.revision.status.value for h in history] == ["superseded", "deployed"]


def _apply(instance: str, manifest: Mapping[str, Any]) -> None:
    target = load_target(instance)
    try:
        target.apply(Manifest.model_validate(dict(manifest)))
    finally:
        target.close()  # type: ignore[attr-defined]


def test_drift_check_does_not_judge_an_instance_a_deploy_has_under_way(tmp_path, start_agent):
    """A deploy applies before it records (a chunk records its successes when it
    ends): the check reports such an instance not judged, keeps no finding and
    repairs nothing; once the deploy has recorded, it is in sync."""
    world = build_world(tmp_path, start_agent, [("a1", "auto", None), ("a2", "auto", None)])
    compile_and_deploy(requested_by="ops", strategy=FAST)
    world.publish("web", "1.2.0")
    (spec,) = rollouts.prepare_rollout(actor="ops", instances=["a1"]).specs
    locks.take("a1", run="run-under-way")
    rollouts.record_started(spec, flow_run_id="run-under-way", actor="ops")
    _apply("a1", spec.manifest)  # applied, not yet recorded

    report = drift_check(repair=True, strategy=FAST)
    assert report["drifted"] == {} and report["repaired"] == {}
    assert report["not_judged"] == {"a1": "being deployed by run run-under-way"}
    assert drift.drifted() == {}
    assert world.running("a1")["web"] == "1.2.0"  # nothing put back
    # Its run dies: the open record is an orphan, left to recovery, not repaired.
    locks.release("a1", run="run-under-way")
    report = drift_check(repair=True, strategy=FAST)
    assert report["repaired"] == {}
    assert report["not_judged"] == {
        "a1": "left open by run run-under-way, which stopped: recovery settles it"
    }
    locks.take("a1", run="run-under-way")  # back: it records its end

    rollouts.record_finished(
        spec, "succeeded", flow_run_id="run-under-way", actor="ops", release=True
    )
    assert drift_check()["drifted"] == {}
    # Recorded between the read of the records and the check: not judged either.
    stale = drift.recorded_manifests(["a2"])
    (spec2,) = rollouts.prepare_rollout(actor="ops", instances=["a2"]).specs
    _apply("a2", spec2.manifest)
    rollouts.record_started(spec2, flow_run_id="run-2", actor="ops")
    rollouts.record_finished(spec2, "succeeded", flow_run_id="run-2", actor="ops")
    assert drift.in_motion(stale) == {"a2": f"revision {spec2.revision} recorded meanwhile"}
