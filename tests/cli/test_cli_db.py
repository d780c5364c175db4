"""The `fleet` commands on the database, on SQLite and PostgreSQL."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import pytest
from sqlalchemy import Engine

from fleet.cli.main import main
from fleet.db.engine import dispose_engines
from fleet.settings import get_settings
from tests.db import support
from tests.db.support import snapshot

# The database fixtures of tests/db (both backends).
_pg_session_url = support._pg_session_url
_sqlite_template = support._sqlite_template
db_url = support.db_url
cli_db = support.cli_db
engine = support.engine

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "fleet.yaml"
OSV = ROOT / "tests" / "data" / "osv"
AT = "2026-11-26T12:00:00Z"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def ready(cli_db: str, capsys: pytest.CaptureFixture[str]) -> str:
    code, out, _ = run(capsys, "init")
    assert code == 0 and "at schema" in out
    code, out, _ = run(capsys, "apply", str(EXAMPLE), "--actor", "ops")
    assert code == 0 and "created" in out
    return cli_db


def test_commands_ask_for_init_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLEET_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FLEET_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    try:
        for argv in (["plan"], ["export"], ["audit", "verify"], ["apply", str(EXAMPLE)]):
            code, _, err = run(capsys, *argv)
            assert code == 1 and "fleet init" in err, argv
        code, out, _ = run(capsys, "init")
        assert code == 0 and str(tmp_path / "home" / "fleet.db") in out
        assert run(capsys, "audit", "verify")[0] == 0
    finally:
        get_settings.cache_clear()
        dispose_engines()


def test_plan_from_the_database_matches_the_file(
    ready: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, from_db, _ = run(capsys, "plan", "--json", "--at", AT)
    assert code == 0
    code, from_file, _ = run(capsys, "plan", str(EXAMPLE), "--json", "--at", AT)
    assert code == 0

    def by_instance(text: str) -> dict[str, object]:
        return {i["instance"]: i for i in json.loads(text)["instances"]}

    assert by_instance(from_db) == by_instance(from_file)
    code, one, _ = run(capsys, "plan", "--json", "--at", AT, "--instance", "acme-prod")
    assert [i["instance"] for i in json.loads(one)["instances"]] == ["acme-prod"]


def test_apply_twice_then_export_round_trip(
    ready: str, engine: Engine, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run(capsys, "apply", str(EXAMPLE))
    assert code == 0 and "no changes (0 audit events)" in out
    for fmt in ("yaml", "json"):
        exported = tmp_path / f"fleet.{fmt}"
        assert run(capsys, "export", "--format", fmt, "-o", str(exported))[0] == 0
        before = snapshot(engine)
        code, out, _ = run(capsys, "apply", str(exported))
        assert code == 0 and "no changes" in out
        assert snapshot(engine) == before
        assert run(capsys, "validate", str(exported))[0] == 0


def test_an_invalid_fleet_file_changes_nothing(
    ready: str, engine: Engine, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace("channel: stable", "channel: stabel", 1))
    before = snapshot(engine)
    code, _, err = run(capsys, "apply", str(bad), "--prune")
    assert code == 2 and "'stabel'" in err
    assert snapshot(engine) == before


def test_pins_from_the_cli(ready: str, engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(engine)
    code, _, err = run(
        capsys,
        "pins",
        "add",
        "--scope",
        "global",
        "--component",
        "api",
        "--spec",
        ">=x",
        "--reason",
        "typo",
    )
    assert code == 2 and "'>=x'" in err
    assert snapshot(engine) == before

    code, out, _ = run(
        capsys,
        "pins",
        "add",
        "--scope",
        "channel:beta",
        "--component",
        "web",
        "--spec",
        "<9",
        "--reason",
        "hold",
        "--expires",
        "2030-01-01T00:00:00Z",
    )
    assert code == 0
    pin_id = out.split()[1]
    code, out, _ = run(capsys, "pins", "list", "--json")
    [mine] = [p for p in json.loads(out) if str(p["id"]) == pin_id]
    assert mine["author"] == getpass.getuser()  # --actor defaults to the OS user
    assert mine["expires_at"] == "2030-01-01T00:00:00Z"
    assert run(capsys, "pins", "expire", pin_id, "--actor", "bob")[0] == 0
    assert run(capsys, "pins", "remove", pin_id, "--actor", "carol")[0] == 0
    assert run(capsys, "pins", "remove", pin_id)[0] == 1
    code, out, _ = run(capsys, "audit", "log", "--subject", "pin:channel:beta/web<9", "--json")
    actions = [(e["action"], e["actor"]) for e in map(json.loads, out.splitlines())]
    assert actions == [
        ("pin.create", getpass.getuser()),
        ("pin.expire", "bob"),
        ("pin.delete", "carol"),
    ]


@pytest.mark.parametrize(
    ("actor", "why"),
    [
        ("alice\u200b", "U+200B is an invisible format character"),
        ("\u0430lice", "U+0430 CYRILLIC SMALL LETTER A is Cyrillic, mixed with Latin"),
        ("", "empty"),
    ],
)
def test_an_actor_that_is_no_name_exits_2_and_writes_nothing(
    ready: str,
    engine: Engine,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    actor: str,
    why: str,
) -> None:
    changed = tmp_path / "changed.yaml"
    changed.write_text(EXAMPLE.read_text().replace("Hold api 2.5.0", "Hold api 2.5.x", 1))
    before = snapshot(engine)
    for argv in (
        ["pins", "add", "--scope", "global", "--component", "api", "--spec", "<9", "--reason", "r"],
        ["pins", "expire", "1"],
        ["pins", "remove", "1"],
        ["apply", str(changed)],
        ["tokens", "create", "--name", "newcomer", "--role", "viewer"],
        ["tokens", "revoke", "nobody"],
        ["advisories", "import", str(OSV / "PYSEC-2019-217.json"), "--component-map", "x=web"],
        [
            *["risk", "accept", "--instance", "acme-prod", "--advisory", "FLEET-2026-0004"],
            *["--reason", "WAF rule", "--until", "2099-01-01T00:00:00Z"],
        ],
    ):
        code, out, err = run(capsys, *argv, "--actor", actor)
        assert (code, out) == (2, ""), argv
        assert err == f"fleet: error: Invalid --actor: {actor!r} ({why})\n", argv
    assert snapshot(engine) == before


def test_the_actor_is_recorded_trimmed(
    ready: str, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, _ = run(
        capsys,
        *["pins", "add", "--scope", "global", "--component", "api", "--spec", "<9"],
        *["--reason", "r", "--actor", " Дмитрий\t"],
    )
    assert code == 0
    code, out, _ = run(capsys, "audit", "log", "--subject", "pin:global/api<9", "--json")
    [event] = map(json.loads, out.splitlines())
    assert (event["actor"], event["details"]["after"]["author"]) == ("Дмитрий", "Дмитрий")


@pytest.mark.parametrize(
    ("author", "problem"),
    [
        (
            "sre-le\u0430d@vendor.example",
            "pins[1].author: 'sre-leаd@vendor.example' (U+0430 CYRILLIC SMALL LETTER A is "
            "Cyrillic, mixed with Latin)",
        ),
        (
            "sre-lead\u200b@vendor.example",
            "pins[1].author: 'sre-lead\\u200b@vendor.example' (U+200B is an invisible format "
            "character)",
        ),
    ],
)
def test_a_fleet_file_pin_author_that_is_no_name_is_refused(
    ready: str,
    engine: Engine,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    author: str,
    problem: str,
) -> None:
    bad = tmp_path / "bad.yaml"
    text = EXAMPLE.read_text()
    bad.write_text(text.replace("author: sre-lead@vendor.example", f"author: {author}"))
    before = snapshot(engine)
    for command in ("apply", "validate"):
        code, _, err = run(capsys, command, str(bad))
        assert code == 2, command
        assert f"{bad}: {problem}" in err.splitlines(), (command, err)
    assert snapshot(engine) == before


def test_advisories_import_and_risk_accept(
    ready: str, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    record = str(OSV / "GHSA-p64x-8rxx-wf6q.json")  # Django
    before = snapshot(engine)
    code, _, err = run(capsys, "advisories", "import", record)
    assert code == 2 and "'django'" in err and "--component-map" in err
    code, _, err = run(capsys, "advisories", "import", record, "--component-map", "django=nope")
    assert code == 2 and "'nope'" in err
    assert snapshot(engine) == before

    code, out, _ = run(
        capsys, "advisories", "import", record, "--component-map", "django=web", "--actor", "sec"
    )
    assert code == 0 and "1 created" in out
    code, out, _ = run(capsys, "advisories", "import", record, "--component-map", "Django=web")
    assert code == 0 and "1 unchanged" in out
    code, out, _ = run(
        capsys,
        "risk",
        "accept",
        "--instance",
        "acme-prod",
        "--advisory",
        "GHSA-p64x-8rxx-wf6q",
        "--reason",
        "WAF rule",
        "--until",
        "2099-01-01T00:00:00Z",
        "--actor",
        "ciso",
    )
    assert code == 0 and "accepted by ciso" in out
    code, out, _ = run(capsys, "export", "--format", "json")
    data = json.loads(out)
    assert any(a["id"] == "GHSA-p64x-8rxx-wf6q" for a in data["advisories"])
    assert any(r["by"] == "ciso" for r in data["risk_acceptances"])


def test_history_and_audit(ready: str, engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    from fleet.services.manifests import compile_and_store, mark_manifest

    stored = compile_and_store(actor="planner", flow_run_id="run-7", engine=engine)
    name, number = sorted(stored.revisions.items())[0]
    mark_manifest(name, number, "deployed", actor="deployer", flow_run_id="run-7", engine=engine)
    code, out, _ = run(capsys, "history", name, "--json")
    [entry] = json.loads(out)
    assert entry["revision"] == number and entry["status"] == "deployed"
    assert entry["flow_run_id"] == "run-7" and entry["changes"]
    code, out, _ = run(capsys, "history", name)
    assert code == 0 and f"r{number}" in out and "deployed" in out and " -> " in out
    assert run(capsys, "history", "nobody")[0] == 1

    code, out, _ = run(capsys, "audit", "verify")
    assert code == 0 and "OK" in out
    code, out, _ = run(capsys, "audit", "export", "--format", "jsonl")
    lines = [json.loads(line) for line in out.splitlines()]
    assert [e["seq"] for e in lines] == list(range(1, len(lines) + 1))
    assert lines[-1]["flow_run_id"] == "run-7"
    code, out, _ = run(capsys, "audit", "log", "--subject", f"instance:{name}")
    assert "manifest.compile" in out and "manifest.deployed" in out
    code, out, _ = run(capsys, "audit", "log", "--since", "2999-01-01T00:00:00Z")
    assert code == 0 and out == ""
    assert run(capsys, "audit", "log", "--since", "yesterday")[0] == 2


def test_history_names_the_run_that_planned_and_the_run_that_deployed(
    ready: str, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    from fleet.services import deployments
    from fleet.services.manifests import compile_and_store, mark_manifest

    stored = compile_and_store(actor="planner", flow_run_id="plan-run", engine=engine)
    name, number = sorted(stored.revisions.items())[0]
    for run_id, outcome in (("crashed-run", "failed"), ("deploy-run", "succeeded")):
        deployments.start_deployment(
            name, number, flow_run_id=run_id, actor="deployer", engine=engine
        )
        deployments.finish_deployment(
            name, flow_run_id=run_id, outcome=outcome, actor="deployer", engine=engine
        )
    mark_manifest(
        name, number, "deployed", actor="deployer", flow_run_id="deploy-run", engine=engine
    )
    _, out, _ = run(capsys, "history", name, "--json")
    [entry] = json.loads(out)
    assert entry["planned_by_run"] == "plan-run" and entry["deployed_by_run"] == "deploy-run"
    assert entry["deployments"] == [
        {"flow_run_id": "crashed-run", "outcome": "failed"},
        {"flow_run_id": "deploy-run", "outcome": "succeeded"},
    ]
    code, out, _ = run(capsys, "history", name)
    assert code == 0 and "planned by run plan-run" in out
    assert "deploy succeeded in run deploy-run" in out
    assert "deploy failed in run crashed-run" in out


def test_db_upgrade_is_idempotent(ready: str, capsys: pytest.CaptureFixture[str]) -> None:
    from fleet.db.migrate import head_revision

    code, out, _ = run(capsys, "db", "upgrade")
    assert code == 0 and f"at schema {head_revision()}" in out
