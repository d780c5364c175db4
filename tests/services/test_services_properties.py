"""Properties of apply and export, on SQLite (the backends agree per the other tests)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet.core.fleetfile import (
    FleetFile,
    fleet_file_from_state,
    parse_fleet_data,
    parse_fleet_text,
)
from fleet.db.engine import create_all, make_engine
from fleet.services.fleet import apply_fleet_file, export_fleet_file
from tests.core.test_reference_planner import fleets as reference_fleets
from tests.core.test_reference_planner import security_fleets
from tests.factories import NOW

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fleet.yaml"
FULL = parse_fleet_text(EXAMPLE.read_text())


def _subset(instances: set[int], pins: set[int], advisories: set[int], soak: int) -> FleetFile:
    data = FULL.to_data()
    data["instances"] = [i for n, i in enumerate(data["instances"]) if n in instances]
    names = {i["name"] for i in data["instances"]}
    data["pins"] = [
        p
        for n, p in enumerate(data.get("pins", []))
        if n in pins and not (p["scope"].startswith("instance:") and p["scope"][9:] not in names)
    ]
    data["advisories"] = [a for n, a in enumerate(data.get("advisories", [])) if n in advisories]
    ids = {a["id"] for a in data["advisories"]}
    data["risk_acceptances"] = [
        r
        for r in data.get("risk_acceptances", [])
        if r["instance"] in names and r["advisory"] in ids
    ]
    data["channels"][0]["soak"] = f"{soak}h"
    return parse_fleet_data(data)


def _canonical(fleet: FleetFile) -> dict[str, Any]:
    """Each section as a sorted list: the database does not keep a file's order."""
    data = fleet_file_from_state(fleet.to_state()).to_data()
    return {
        key: sorted(json.dumps(item, sort_keys=True) for item in value)
        if isinstance(value, list) and key != "components"
        else value
        for key, value in data.items()
    }


indices = st.sets(st.integers(0, 15))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(indices, indices, indices, st.integers(0, 72), indices, indices, indices, st.integers(0, 72))
def test_apply_with_prune_makes_the_database_equal_the_file(
    i1: set[int],
    p1: set[int],
    a1: set[int],
    s1: int,
    i2: set[int],
    p2: set[int],
    a2: set[int],
    s2: int,
) -> None:
    engine = make_engine("sqlite://")
    try:
        create_all(engine)
        first, second = _subset(i1, p1, a1, s1), _subset(i2, p2, a2, s2)
        apply_fleet_file(first, actor="ops", now=NOW, engine=engine)
        assert _canonical(export_fleet_file(engine=engine)) == _canonical(first)
        apply_fleet_file(second, actor="ops", prune=True, now=NOW, engine=engine)
        exported = export_fleet_file(engine=engine)
        assert _canonical(exported) == _canonical(second)
        again = apply_fleet_file(exported, actor="ops", prune=True, now=NOW, engine=engine)
        assert not again.changed and again.audit_events == 0
    finally:
        engine.dispose()


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(reference_fleets(), security_fleets()))
def test_export_then_validate_then_apply_is_the_identity_on_the_database(state: Any) -> None:
    """Generated fleets (advisories on several components under one id, pre-releases,
    pins at three levels, risk acceptances, yanks) survive a round trip unchanged."""
    # A fleet file names only advisories it has, and accepts each risk once.
    ids = {a.id for a in state.advisories}
    accepted = {(r.instance, r.advisory): r for r in state.risk_acceptances if r.advisory in ids}
    # ... and gives each pin (scope, component, spec) once.
    pins = {(p.scope, p.component, str(p.spec)): p for p in reversed(state.pins)}
    state = replace(
        state,
        risk_acceptances=list(accepted.values()),
        pins=[p for p in state.pins if pins[(p.scope, p.component, str(p.spec))] is p],
    )
    engine = make_engine("sqlite://")
    try:
        create_all(engine)
        given_file = parse_fleet_data(fleet_file_from_state(state).to_data())
        apply_fleet_file(given_file, actor="ops", now=NOW, engine=engine)
        exported = export_fleet_file(engine=engine)
        text = json.dumps(exported.to_data())
        validated = parse_fleet_text(text)  # what `fleet validate` reads
        again = apply_fleet_file(validated, actor="ops", now=NOW, engine=engine)
        assert not again.changed and again.audit_events == 0
        assert export_fleet_file(engine=engine).to_data() == exported.to_data()
        assert _canonical(exported) == _canonical(fleet_file_from_state(state))
    finally:
        engine.dispose()
