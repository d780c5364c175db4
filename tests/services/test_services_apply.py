"""Applying a fleet file: declarative upsert, idempotence, prune, round trip, bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from fleet.core.errors import FleetFileError
from fleet.core.fleetfile import FleetFile, parse_fleet_data, parse_fleet_text
from fleet.db.engine import transaction
from fleet.db.fleet import INSTANCE
from fleet.services import audit
from fleet.services.fleet import apply_fleet_file, export_fleet_file, load_state
from fleet.services.manifests import compile_and_store, history
from tests.db.support import snapshot
from tests.factories import NOW

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fleet.yaml"


def example() -> FleetFile:
    return parse_fleet_text(EXAMPLE.read_text())


def edited(fleet: FleetFile, **sections: Any) -> FleetFile:
    data = fleet.to_data()
    data.update(sections)
    return parse_fleet_data(data)


def test_apply_creates_everything_with_one_audit_event_per_object(engine: Engine) -> None:
    fleet = example()
    result = apply_fleet_file(fleet, actor="ops", now=NOW, engine=engine)
    objects = (
        len(fleet.versions)
        + len(fleet.channels)
        + len(fleet.instances)
        + len(fleet.pins)
        + len(fleet.advisories)
        + len(fleet.risk_acceptances)
    )
    assert result.counts()["create"] == objects
    events = list(audit.events(engine=engine))
    assert len(events) == result.audit_events == objects + 1 + 1  # + components + summary
    assert events[-1].action == "fleet.apply"
    assert {e.actor for e in events} == {"ops"}
    assert audit.verify(engine=engine).ok
    state = load_state(engine=engine)
    assert state.components == tuple(fleet.components)
    assert sorted(i.name for i in state.instances) == sorted(i.name for i in fleet.instances)


def test_applying_the_same_file_twice_writes_nothing(engine: Engine) -> None:
    apply_fleet_file(example(), actor="ops", now=NOW, engine=engine)
    before = snapshot(engine)
    result = apply_fleet_file(example(), actor="ops", now=NOW, engine=engine)
    assert not result.changed and result.audit_events == 0
    assert snapshot(engine) == before


def test_export_round_trips(engine: Engine) -> None:
    apply_fleet_file(example(), actor="ops", now=NOW, engine=engine)
    exported = export_fleet_file(engine=engine)
    # The export is a valid fleet file that plans like the original.
    assert parse_fleet_data(exported.to_data()) == exported
    before = snapshot(engine)
    assert not apply_fleet_file(exported, actor="ops", now=NOW, engine=engine).changed
    assert snapshot(engine) == before


def test_only_the_differences_are_written(engine: Engine) -> None:
    fleet = example()
    apply_fleet_file(fleet, actor="ops", now=NOW, engine=engine)
    data = fleet.to_data()
    data["instances"][0]["labels"] = {"region": "us", "tier": "gold"}
    data["channels"][0]["soak"] = "3d"
    result = apply_fleet_file(parse_fleet_data(data), actor="alice", now=NOW, engine=engine)
    name = data["instances"][0]["name"]
    channel = data["channels"][0]["name"]
    assert [(c.action, c.subject) for c in result.changes] == [
        ("update", f"channel:{channel}"),
        ("update", f"instance:{name}"),
    ]
    events = list(audit.events(subject=f"instance:{name}", engine=engine))
    assert events[-1].action == "instance.update"
    assert events[-1].actor == "alice"
    assert set(events[-1].details["changes"]) == {"labels"}


def test_objects_missing_from_the_file_stay_unless_pruned(engine: Engine) -> None:
    fleet = example()
    apply_fleet_file(fleet, actor="ops", now=NOW, engine=engine)
    gone = fleet.instances[0].name
    stored = compile_and_store(actor="ops", now=NOW, instances=[gone], engine=engine)
    data = fleet.to_data()
    data["instances"] = data["instances"][1:]
    data["risk_acceptances"] = [
        r for r in data.get("risk_acceptances", []) if r["instance"] != gone
    ]
    data["pins"] = [p for p in data.get("pins", []) if p["scope"] != f"instance:{gone}"]
    smaller = parse_fleet_data(data)

    assert not apply_fleet_file(smaller, actor="ops", now=NOW, engine=engine).changed
    assert gone in {i.name for i in load_state(engine=engine).instances}

    pruned = apply_fleet_file(smaller, actor="ops", prune=True, now=NOW, engine=engine)
    assert ("retire", f"instance:{gone}") in [(c.action, c.subject) for c in pruned.changes]
    assert gone not in {i.name for i in load_state(engine=engine).instances}
    # History stays: the manifests, the row of the instance, the audit chain.
    assert [h.revision.number for h in history(gone, engine=engine)] == list(
        stored.revisions.values()
    )
    with transaction(engine) as session:
        assert session.execute(select(INSTANCE.c.retired_at).where(INSTANCE.c.name == gone)).one()
    assert audit.verify(engine=engine).ok
    # Re-applying the full file brings the instance back.
    restored = apply_fleet_file(fleet, actor="ops", now=NOW, engine=engine)
    assert ("restore", f"instance:{gone}") in [(c.action, c.subject) for c in restored.changes]
    assert gone in {i.name for i in load_state(engine=engine).instances}


def test_prune_removes_pins_and_resets_security(engine: Engine) -> None:
    fleet = example()
    apply_fleet_file(fleet, actor="ops", now=NOW, engine=engine)
    bare = edited(fleet, pins=[], security=None)
    result = apply_fleet_file(bare, actor="ops", prune=True, now=NOW, engine=engine)
    assert load_state(engine=engine).pins == []
    actions = {c.action for c in result.changes}
    assert "delete" in actions
    assert export_fleet_file(engine=engine).security is None


def test_a_file_that_leaves_an_invalid_fleet_changes_nothing(engine: Engine) -> None:
    fleet = example()
    apply_fleet_file(fleet, actor="ops", now=NOW, engine=engine)
    before = snapshot(engine)
    # The same release spelled another way: fine alone, a duplicate version once merged.
    version = fleet.versions[0].to_data()
    data = fleet.to_data()
    data["versions"] = [{**version, "version": version["version"] + ".0"}]
    with pytest.raises(FleetFileError, match="duplicate version"):
        apply_fleet_file(parse_fleet_data(data), actor="ops", now=NOW, engine=engine)
    assert snapshot(engine) == before


def test_duplicate_pins_are_refused_naming_the_pin(engine: Engine) -> None:
    fleet = example()
    apply_fleet_file(fleet, actor="ops", now=NOW, engine=engine)
    before = snapshot(engine)
    pin = fleet.pins[0].to_data()
    with pytest.raises(FleetFileError, match=r"duplicate pin .*" + pin["component"]):
        apply_fleet_file(
            edited(fleet, pins=[pin, {**pin, "reason": "again"}]),
            actor="ops",
            now=NOW,
            engine=engine,
        )
    assert snapshot(engine) == before


def test_security_deadlines_are_applied_audited_and_exported(engine: Engine) -> None:
    fleet = edited(example(), security=None)
    apply_fleet_file(fleet, actor="ops", now=NOW, engine=engine)
    data = fleet.to_data()
    data["security"] = {"deadlines": {"high": "3d", "low": "90d"}}
    result = apply_fleet_file(parse_fleet_data(data), actor="ciso", now=NOW, engine=engine)
    assert [(c.action, c.subject) for c in result.changes] == [("update", "security")]
    [event] = [e for e in audit.events(subject="security", engine=engine)]
    assert event.details["changes"]["low"] == {"before": None, "after": 90 * 86400}
    exported = export_fleet_file(engine=engine).to_data()
    assert exported["security"] == {"deadlines": {"high": "3d", "low": "90d"}}
    # A file without a security section leaves the deadlines alone (no prune) ...
    assert not apply_fleet_file(fleet, actor="ops", now=NOW, engine=engine).changed
    # ... and a pruning apply resets them to the defaults.
    apply_fleet_file(fleet, actor="ops", prune=True, now=NOW, engine=engine)
    assert "security" not in export_fleet_file(engine=engine).to_data()


def test_verified_approvals_round_trips_through_apply_and_export(engine: Engine) -> None:
    fleet = example()
    apply_fleet_file(fleet, actor="ops", now=NOW, engine=engine)
    data = fleet.to_data()
    lts = next(c for c in data["channels"] if c["name"] == "lts")
    assert "verified_approvals" not in lts  # false is the default and is not written
    lts["verified_approvals"] = True
    result = apply_fleet_file(parse_fleet_data(data), actor="ciso", now=NOW, engine=engine)
    assert [(c.action, c.subject) for c in result.changes] == [("update", "channel:lts")]
    (event,) = [e for e in audit.events(subject="channel:lts", engine=engine) if e.actor == "ciso"]
    assert set(event.details["changes"]) == {"verified_approvals"}
    assert load_state(engine=engine).channels["lts"].verified_approvals
    assert not load_state(engine=engine).channels["stable"].verified_approvals
    exported = export_fleet_file(engine=engine)
    (written,) = [c for c in exported.to_data()["channels"] if c["name"] == "lts"]
    assert written["verified_approvals"] is True
    before = snapshot(engine)
    assert not apply_fleet_file(exported, actor="ops", now=NOW, engine=engine).changed
    assert snapshot(engine) == before
