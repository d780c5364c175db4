"""Hostile fleet files and options: `fleet validate`, `plan` and `apply` exit 2
with a message naming the value and where it is, never a traceback, and a
refused `apply` leaves the database as it was (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from sqlalchemy import Engine

from fleet.cli.main import main
from tests.db import support
from tests.db.support import snapshot

_pg_session_url = support._pg_session_url
_sqlite_template = support._sqlite_template
db_url = support.db_url
cli_db = support.cli_db
engine = support.engine

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "fleet.yaml"
AT = "2026-11-26T12:00:00Z"
TEXT = EXAMPLE.read_text()


def _replace(old: str, new: str) -> Callable[[str], str]:
    def change(text: str) -> str:
        assert old in text
        return text.replace(old, new, 1)

    return change


# change to the example, the location and value the message must name
HOSTILE: list[tuple[str, Callable[[str], str], str]] = [
    ("huge soak days", _replace("soak: 48h", 'soak: "99999999d"'), "channels[stable].soak: "),
    ("huge soak weeks", _replace("soak: 48h", 'soak: "99999999999w"'), "'99999999999w'"),
    ("full-width digit", _replace("soak: 48h", 'soak: "１h"'), "channels[stable].soak: "),
    ("negative soak", _replace("soak: 48h", 'soak: "-5h"'), "'-5h'"),
    ("exponent soak", _replace("soak: 48h", 'soak: "1e3h"'), "'1e3h'"),
    ("nan soak", _replace("soak: 48h", "soak: nan"), "'nan'"),
    ("many digits", _replace("soak: 48h", f"soak: {'9' * 5000}h"), "channels[stable].soak: "),
    ("zero-width", _replace("soak: 48h", 'soak: "4\\u200b8h"'), "channels[stable].soak: "),
    (
        "window duration",
        _replace("duration: 4h", 'duration: "99999999999999w"'),
        ".maintenance_window.duration: ",
    ),
    (
        "until at 9999",
        _replace("until: 2026-12-31T23:59:59Z", "until: 9999-12-31T23:59:59-01:00"),
        "risk_acceptances[0].until: time '9999-12-31T23:59:59-01:00' out of range",
    ),
    (
        "pin expiry at year 1",
        _replace("expires_at: 2027-03-31T00:00:00Z", "expires_at: 0001-01-01T00:00:00+01:00"),
        "expires_at: time '0001-01-01T00:00:00+01:00' out of range",
    ),
    (
        "published at year 1",
        _replace("published_at: 2026-11-25T08:00:00Z", "published_at: 0001-01-01T00:00:00+01:00"),
        ".published_at: time '0001-01-01T00:00:00+01:00' out of range",
    ),
    (
        "huge deadline",
        _replace("{critical: 24h,", "{critical: 99999999999w,"),
        "security.deadlines.critical: ",
    ),
    (
        "10 MB reason",
        lambda t: t.replace('reason: "Customer', f'reason: "{"x" * 10_000_000} Customer', 1),
        "risk_acceptances[0].reason: 'xxxx",
    ),
]


@pytest.mark.parametrize(("name", "change", "named"), HOSTILE, ids=[h[0] for h in HOSTILE])
@pytest.mark.parametrize("command", ["validate", "plan"])
def test_hostile_files_exit_2_naming_the_value(
    command: str,
    name: str,
    change: Callable[[str], str],
    named: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(change(TEXT))
    argv = [command, str(path)] + (["--at", AT] if command == "plan" else [])
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert named in err, err[:1000]
    assert "Traceback" not in out + err
    assert len(err) < 5000, "a huge value is quoted cut short"


@pytest.mark.parametrize("soak", ["0", "0h", '"0"'])
def test_soak_zero_is_no_soak(
    soak: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(TEXT.replace("soak: 48h", f"soak: {soak}", 1))
    assert main(["validate", str(path)]) == 0
    assert main(["plan", str(path), "--at", AT]) == 0


def test_a_json_file_with_a_lone_surrogate_or_deep_nesting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = yaml.safe_load(TEXT)
    data["pins"][0]["reason"] = "\ud800"
    path = tmp_path / "fleet.json"
    path.write_text(json.dumps(data, default=str))
    assert main(["validate", str(path)]) == 2
    assert "pins[0].reason: '\\ud800' (a lone surrogate is not text)" in capsys.readouterr().err
    path.write_text('{"format": 1, "components": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert main(["validate", str(path)]) == 2
    assert "nested too deeply" in capsys.readouterr().err


@pytest.mark.parametrize(
    "at", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "２０２６-11-26T12:00:00Z"]
)
def test_plan_at_out_of_range_exits_2(at: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(EXAMPLE), "--at", at]) == 2
    assert f"Invalid --at time: {at!r}" in capsys.readouterr().err


def test_the_issue_case_prints_no_traceback(tmp_path: Path) -> None:
    """The report: `soak: 99999999d` passed validate, then plan died with an OverflowError."""
    path = tmp_path / "fleet.yaml"
    path.write_text(TEXT.replace("soak: 48h", 'soak: "99999999d"', 1))
    for argv in (["validate", str(path)], ["plan", str(path), "--at", AT]):
        done = subprocess.run(
            [sys.executable, "-m", "fleet.cli.main", *argv],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
        assert "channels[stable].soak: invalid duration '99999999d'" in done.stderr


@pytest.mark.parametrize(
    ("name", "change", "named"),
    [HOSTILE[0], HOSTILE[9], HOSTILE[13]],
    ids=[HOSTILE[i][0] for i in (0, 9, 13)],
)
def test_a_refused_apply_changes_nothing(
    name: str,
    change: Callable[[str], str],
    named: str,
    cli_db: str,
    engine: Engine,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["init"]) == 0
    assert main(["apply", str(EXAMPLE), "--actor", "ops"]) == 0
    capsys.readouterr()
    before = snapshot(engine)
    path = tmp_path / "fleet.yaml"
    path.write_text(change(TEXT))
    assert main(["apply", str(path), "--prune", "--actor", "ops"]) == 2
    out, err = capsys.readouterr()
    assert named in err and "Traceback" not in out + err
    assert snapshot(engine) == before


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (
            [
                "pins",
                "add",
                "--scope",
                "global",
                "--component",
                "api",
                "--spec",
                "<3",
                "--reason",
                "r",
                "--expires",
                "9999-12-31T23:59:59-01:00",
            ],
            "--expires time",
        ),
        (
            [
                "pins",
                "add",
                "--scope",
                "global",
                "--component",
                "api",
                "--spec",
                "<3",
                "--reason",
                "x" * 5000,
            ],
            "pin reason",
        ),
        (["audit", "log", "--since", "0001-01-01T00:00:00+01:00"], "--since time"),
    ],
    ids=["pin expiry", "pin reason", "audit since"],
)
def test_hostile_options_exit_2(
    argv: list[str],
    named: str,
    cli_db: str,
    engine: Engine,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["init"]) == 0
    assert main(["apply", str(EXAMPLE), "--actor", "ops"]) == 0
    capsys.readouterr()
    before = snapshot(engine)
    assert main(argv) == 2
    assert named in capsys.readouterr().err
    assert snapshot(engine) == before
