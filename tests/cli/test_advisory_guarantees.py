"""The security guarantees as a new user meets them: OSV records shaped like the
PyPA advisory database's, hand-made fleet files, and the `fleet` commands.

Each test is one way the guarantees were seen to break: a critical advisory
not enforced when its OSV record also names a low one; a fix that lands on
another critical; updates onto known holes; an advisory without a fix
blocking the whole instance; a requirement on a missing component counted as
met.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine

from fleet.cli.main import main
from fleet.services.compliance import exposures
from tests.db import support

_pg_session_url = support._pg_session_url
_sqlite_template = support._sqlite_template
db_url = support.db_url
cli_db = support.cli_db
engine = support.engine

AT = "2026-11-30T12:00:00Z"
LONG_AGO = "2026-01-01T00:00:00Z"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def fleet_file(
    tmp_path: Path,
    *,
    versions: dict[str, list[str | tuple[str, dict[str, str]]]],
    current: dict[str, str],
    policy: str = "frozen",
    advisories: list[dict[str, Any]] = (),  # type: ignore[assignment]
    components: list[str] | None = None,
) -> Path:
    entries = []
    for component, listed in versions.items():
        for item in listed:
            version, requires = item if isinstance(item, tuple) else (item, {})
            entry: dict[str, Any] = {
                "component": component,
                "version": version,
                "released_at": LONG_AGO,
            }
            if requires:
                entry["requires"] = requires
            entries.append(entry)
    data = {
        "format": 1,
        "components": components or list(versions),
        "versions": entries,
        "channels": [{"name": "stable", "policy": policy}],
        "instances": [
            {"name": "acme-prod", "customer": "Acme", "channel": "stable", "current": current}
        ],
        "advisories": list(advisories),
    }
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def advisory(
    ident: str, component: str, severity: str, events: list[dict[str, str]]
) -> dict[str, Any]:
    return {
        "id": ident,
        "component": component,
        "severity": severity,
        "published_at": "2026-11-29T00:00:00Z",
        "ranges": [{"type": "ECOSYSTEM", "events": events}],
    }


def plan_of(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code, out, err = run(capsys, "plan", *argv, "--json", "--at", AT)
    assert code == 0, err
    (item,) = json.loads(out)["instances"]
    return dict(item)


def moves(item: dict[str, Any]) -> dict[str, tuple[str | None, str | None]]:
    return {c: (v["from"], v["to"]) for c, v in item["components"].items() if v["from"] != v["to"]}


# One OSV record, two packages: the api entry is CRITICAL, the web entry LOW
# (the PyPA database's shape: severity per affected entry).
TWO_PACKAGES = {
    "schema_version": "1.6.0",
    "id": "GHSA-xxxx-2222-yyyy",
    "aliases": ["CVE-2026-4242"],
    "published": "2026-11-30T06:00:00Z",
    "modified": "2026-11-30T06:00:00Z",
    "summary": "Token forgery in the vendor's API; a cosmetic leak in its web UI",
    "affected": [
        {
            "package": {"ecosystem": "PyPI", "name": "vendor-api"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.3.5"}]}],
            "database_specific": {"severity": "CRITICAL"},
        },
        {
            "package": {"ecosystem": "PyPI", "name": "vendor-web"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.3.5"}]}],
            "database_specific": {"severity": "LOW"},
        },
    ],
}


def test_a_critical_entry_of_a_two_package_record_is_enforced_everywhere(
    cli_db: str, engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = fleet_file(
        tmp_path,
        versions={"api": ["2.3.0", "2.3.5"], "web": ["2.3.0", "2.3.5"]},
        current={"api": "2.3.0", "web": "2.3.0"},
    )
    assert run(capsys, "init")[0] == 0
    assert run(capsys, "apply", str(path), "--actor", "ops")[0] == 0
    record = tmp_path / "ghsa.json"
    record.write_text(json.dumps(TWO_PACKAGES), encoding="utf-8")
    code, _, err = run(
        capsys,
        "advisories",
        "import",
        str(record),
        "--component-map",
        "vendor-api=api",
        "--component-map",
        "vendor-web=web",
        "--actor",
        "secops",
    )
    assert code == 0, err

    # The plan: the api entry is critical, so a frozen instance gets the fix.
    item = plan_of(capsys)
    assert item["decision"] == "enforce-security"
    assert moves(item) == {"api": ("2.3.0", "2.3.5")}  # web (low) does not move
    flags = {(a["id"], a["component"]): a for a in item["advisories"]}
    assert flags[("GHSA-xxxx-2222-yyyy", "api")]["severity"] == "critical"
    assert flags[("GHSA-xxxx-2222-yyyy", "api")]["enforced"] is True
    assert flags[("GHSA-xxxx-2222-yyyy", "web")]["severity"] == "low"
    assert flags[("GHSA-xxxx-2222-yyyy", "web")]["enforced"] is False

    # The compliance view says the same.
    from datetime import datetime

    now = datetime.fromisoformat(AT)
    seen = {(e.advisory, e.component): e for e in exposures(now=now, engine=engine)}
    assert seen[("GHSA-xxxx-2222-yyyy", "api")].enforced
    assert seen[("GHSA-xxxx-2222-yyyy", "api")].status == "enforced"
    assert seen[("GHSA-xxxx-2222-yyyy", "web")].status == "report-only"

    # Export, then validate and apply back: the same database.
    out = tmp_path / "export.yaml"
    code, _, err = run(capsys, "export", "--output", str(out))
    assert code == 0, err
    code, _, err = run(capsys, "validate", str(out))
    assert code == 0, err
    before = support.snapshot(engine)
    code, _, err = run(capsys, "apply", str(out), "--actor", "ops")
    assert code == 0, err
    assert support.snapshot(engine) == before


def test_a_fix_never_lands_on_another_critical(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = fleet_file(
        tmp_path,
        versions={"api": ["2.3.0", "2.3.5", "2.3.6"]},
        current={"api": "2.3.0"},
        advisories=[
            advisory("CVE-A", "api", "critical", [{"introduced": "2.0"}, {"fixed": "2.3.5"}]),
            advisory("CVE-B", "api", "critical", [{"introduced": "2.3.5"}, {"fixed": "2.3.6"}]),
        ],
    )
    item = plan_of(capsys, str(path))
    assert item["decision"] == "enforce-security"
    assert moves(item) == {"api": ("2.3.0", "2.3.6")}
    assert "CVE-A" in item["components"]["api"]["reason"]


def test_updates_never_move_onto_known_holes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    open_critical = advisory("CVE-C", "api", "critical", [{"introduced": "2.5.0"}])
    path = fleet_file(
        tmp_path,
        versions={"api": ["2.3.0", "2.3.5", "2.5.0"]},
        current={"api": "2.3.0"},
        policy="auto-update",
        advisories=[
            advisory("CVE-A", "api", "critical", [{"introduced": "2.0"}, {"fixed": "2.3.5"}]),
            open_critical,
        ],
    )
    item = plan_of(capsys, str(path))
    assert item["decision"] == "enforce-security"
    assert moves(item) == {"api": ("2.3.0", "2.3.5")}

    # No advisory on the running version: the update skips the known hole.
    path = fleet_file(
        tmp_path,
        versions={"api": ["2.3.0", "2.4.0"]},
        current={"api": "2.3.0"},
        policy="auto-update",
        advisories=[advisory("CVE-C", "api", "critical", [{"introduced": "2.4.0"}])],
    )
    item = plan_of(capsys, str(path))
    assert item["decision"] == "noop"
    assert "2.4.0 skipped: CVE-C (critical) affects it" in item["components"]["api"]["reason"]


def test_a_medium_advisory_excludes_a_version_and_the_reason_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = fleet_file(
        tmp_path,
        versions={"api": ["2.3.0", "2.3.1", "2.4.0"]},
        current={"api": "2.3.0"},
        policy="auto-update",
        advisories=[advisory("CVE-D", "api", "medium", [{"introduced": "2.4.0"}])],
    )
    item = plan_of(capsys, str(path))
    assert moves(item) == {"api": ("2.3.0", "2.3.1")}
    assert "2.4.0 skipped: CVE-D (medium) affects it" in item["components"]["api"]["reason"]
    # A low advisory does not exclude: it is flagged on the planned version.
    path = fleet_file(
        tmp_path,
        versions={"api": ["2.3.0", "2.3.1", "2.4.0"]},
        current={"api": "2.3.0"},
        policy="auto-update",
        advisories=[advisory("CVE-L", "api", "low", [{"introduced": "2.4.0"}])],
    )
    item = plan_of(capsys, str(path))
    assert moves(item) == {"api": ("2.3.0", "2.4.0")}
    assert [(a["id"], a["running"]) for a in item["advisories"]] == [("CVE-L", False)]


def test_an_advisory_without_a_fix_blocks_nothing_else(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = fleet_file(
        tmp_path,
        versions={"api": ["2.3.0"], "web": ["2.0", "2.1"]},
        current={"api": "2.3.0", "web": "2.0"},
        policy="auto-update",
        advisories=[advisory("CVE-N", "api", "critical", [{"introduced": "0"}])],
    )
    item = plan_of(capsys, str(path))
    assert item["decision"] == "deploy"  # not error, and not enforce-security
    assert moves(item) == {"web": ("2.0", "2.1")}
    assert item["errors"] == []
    assert any(w.startswith("no fix available: CVE-N") for w in item["warnings"])
    (flag,) = item["advisories"]
    assert flag["no_fix"] is True and flag["enforced"] is True
    code, out, _ = run(capsys, "plan", str(path), "--at", AT)
    assert code == 0 and "NO FIX AVAILABLE" in out


def test_a_requirement_on_a_missing_component_is_not_met(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = fleet_file(
        tmp_path,
        versions={
            "web": ["2.2.0", ("2.3.0", {"worker": ">=2"})],
            "worker": ["1.0.0"],
        },
        components=["web", "worker"],
        current={"web": "2.2.0"},
        policy="auto-update",
    )
    # worker 1.0.0 could be installed, but web 2.3.0 needs worker>=2: web stays.
    item = plan_of(capsys, str(path))
    got = {c: v["to"] for c, v in item["components"].items()}
    assert got["web"] == "2.2.0"
    assert "requires worker>=2" in item["components"]["web"]["reason"]
    # Running web 2.3.0 without a worker can only be an error naming the clash.
    path = fleet_file(
        tmp_path,
        versions={"web": [("2.3.0", {"worker": ">=2"})], "worker": ["1.0.0"]},
        components=["web", "worker"],
        current={"web": "2.3.0"},
        policy="auto-update",
    )
    item = plan_of(capsys, str(path))
    assert item["decision"] == "error"
    assert "worker" in item["errors"][0]
