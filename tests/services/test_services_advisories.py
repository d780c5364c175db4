"""OSV import into the database (real published records), re-import, risk acceptance."""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from typing import Any

import pytest
from packaging.version import Version
from sqlalchemy import Engine

from fleet.core.advisories import Severity
from fleet.core.errors import InputError, NotFoundError
from fleet.core.fleetfile import parse_fleet_data
from fleet.core.osv import normalize_package_name
from fleet.services import audit
from fleet.services.advisories import accept_risk, import_osv
from fleet.services.fleet import apply_fleet_file, load_state
from tests.db.support import snapshot
from tests.factories import NOW
from tests.factories import OSV_COMPONENTS as COMPONENTS
from tests.factories import OSV_RECORDS as RECORDS


def _fleet(engine: Engine, *, instances: bool = False) -> None:
    data: dict[str, Any] = {"format": 1, "components": sorted(set(COMPONENTS.values()))}
    if instances:
        data["versions"] = [
            {"component": "web", "version": "3.2.13", "released_at": "2022-01-01T00:00:00Z"}
        ]
        data["channels"] = [{"name": "stable", "policy": "auto-update"}]
        data["instances"] = [
            {"name": "acme-prod", "customer": "Acme", "channel": "stable", "current": {}}
        ]
    apply_fleet_file(parse_fleet_data(data), actor="ops", now=NOW, engine=engine)


def _mapped(entry: dict[str, Any]) -> str | None:
    return COMPONENTS.get(normalize_package_name(entry.get("package", {}).get("name", "")))


def test_real_osv_records_keep_their_verdicts_in_the_database(engine: Engine) -> None:
    assert len(RECORDS) >= 20
    _fleet(engine)
    result = import_osv(
        list(RECORDS.values()),
        COMPONENTS,
        actor="secops",
        default_severity=Severity.LOW,
        now=NOW,
        engine=engine,
    )
    assert len(result.created) >= 20 and not result.updated
    stored = {(a.id, a.component): a for a in load_state(engine=engine).advisories}
    checked = 0
    for record_id, record in RECORDS.items():
        for entry in record["affected"]:
            component = _mapped(entry)
            if component is None:
                continue
            advisory = stored[(record_id, component)]
            for raw in entry.get("versions", []):
                assert advisory.affects(Version(raw)), f"{record_id}: {raw} must be affected"
                checked += 1
            for rng in entry.get("ranges", []):
                if rng["type"] != "ECOSYSTEM":
                    continue
                for event in rng["events"]:
                    if "fixed" in event:
                        fixed = Version(event["fixed"])
                        assert not advisory.affects(fixed), f"{record_id}: {fixed} is fixed"
                        checked += 1
    assert checked > 500
    assert audit.verify(engine=engine).ok


def test_reimport_updates_a_modified_record_and_skips_an_unchanged_one(engine: Engine) -> None:
    _fleet(engine)
    record = RECORDS["PYSEC-2021-108"]
    import_osv(record, COMPONENTS, actor="secops", default_severity=Severity.LOW, engine=engine)
    count = len(list(audit.events(engine=engine)))
    again = import_osv(
        record, COMPONENTS, actor="secops", default_severity=Severity.LOW, engine=engine
    )
    assert again.unchanged and not again.created and not again.updated
    assert len(list(audit.events(engine=engine))) == count

    modified = copy.deepcopy(record)
    modified["summary"] = "Catastrophic backtracking in URL authority parsing"
    ecosystem = next(r for r in modified["affected"][0]["ranges"] if r["type"] == "ECOSYSTEM")
    ecosystem["events"].append({"introduced": "2.0.0"})
    changed = import_osv(
        modified, COMPONENTS, actor="secops", default_severity=Severity.LOW, engine=engine
    )
    assert changed.updated == ("PYSEC-2021-108 (http-pool)",)
    [advisory] = load_state(engine=engine).advisories
    assert advisory.summary == modified["summary"]
    assert advisory.affects(Version("2.1.0"))
    last = list(audit.events(engine=engine))[-1]
    assert last.action == "advisory.update"
    assert set(last.details["changes"]) == {"ranges", "summary"}


@pytest.mark.parametrize(
    ("component_map", "message"),
    [
        ({"django": "web"}, "'urllib3'"),  # the package of the second record is not mapped
        ({"django": "web", "urllib3": "nope"}, "Unknown component: 'nope'"),
    ],
    ids=["unmapped-package", "unknown-component"],
)
def test_an_import_with_an_unknown_component_changes_nothing(
    engine: Engine, component_map: dict[str, str], message: str
) -> None:
    _fleet(engine)
    import_osv(
        RECORDS["PYSEC-2019-217"],
        COMPONENTS,
        actor="secops",
        default_severity=Severity.LOW,
        engine=engine,
    )
    before = snapshot(engine)
    django = next(r for r in RECORDS.values() if "django" in json.dumps(r["affected"]).lower())
    with pytest.raises(InputError, match=message):
        import_osv(
            [django, RECORDS["PYSEC-2021-108"]],
            component_map,
            actor="secops",
            default_severity=Severity.LOW,
            engine=engine,
        )
    assert snapshot(engine) == before


def test_accept_a_risk(engine: Engine) -> None:
    _fleet(engine, instances=True)
    import_osv(RECORDS["GHSA-p64x-8rxx-wf6q"], COMPONENTS, actor="secops", engine=engine)
    until = NOW + timedelta(days=30)
    accept_risk(
        "acme-prod",
        "GHSA-p64x-8rxx-wf6q",
        reason="WAF rule",
        until=until,
        actor="ciso",
        now=NOW,
        engine=engine,
    )
    [risk] = load_state(engine=engine).risk_acceptances
    assert (risk.instance, risk.by, risk.until) == ("acme-prod", "ciso", until)
    event = list(audit.events(subject="risk:*", engine=engine))[-1]
    assert event.action == "risk.accept" and event.actor == "ciso"
    before = snapshot(engine)
    with pytest.raises(NotFoundError, match="'GHSA-nope'"):
        accept_risk(
            "acme-prod", "GHSA-nope", reason="x", until=until, actor="ciso", now=NOW, engine=engine
        )
    with pytest.raises(InputError, match="not in the future"):
        accept_risk(
            "acme-prod",
            "GHSA-p64x-8rxx-wf6q",
            reason="x",
            until=NOW,
            actor="ciso",
            now=NOW,
            engine=engine,
        )
    assert snapshot(engine) == before
