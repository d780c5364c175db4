"""Smaller rules: names, durations, pin satisfiability, maintenance windows, OSV
range semantics, severity deadlines, and the purity of the core."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from fleet.core.advisories import AffectedRange, deadline_of, is_enforced
from fleet.core.channels import Channel, MaintenanceWindow, Policy, effective_policy
from fleet.core.durations import format_duration, parse_duration
from fleet.core.errors import InputError, InvalidDuration, InvalidName, InvalidSpecifier
from fleet.core.names import validate_name
from fleet.core.pins import PinScope, conflicting_pins, is_satisfiable
from fleet.core.versions import parse_specifier, parse_version
from tests.factories import NOW, advisory, pin


@pytest.mark.parametrize("name", ["api", "acme-prod", "a", "a" * 63, "web2"])
def test_valid_names(name):
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "Api", "2api", "a" * 64, "../etc", "a/b", "a_b", "-a", "api "]
)
def test_invalid_names_are_quoted(name):
    with pytest.raises(InvalidName, match="Invalid name: " + repr(name).replace("[", r"\[")):
        validate_name(name)


@pytest.mark.parametrize(
    ("text", "delta", "back"),
    [
        ("30m", timedelta(minutes=30), "30m"),
        ("48h", timedelta(hours=48), "2d"),
        ("7d", timedelta(days=7), "1w"),
        ("2w", timedelta(weeks=2), "2w"),
        ("90s", timedelta(seconds=90), "90s"),
        (0, timedelta(0), "0s"),
    ],
)
def test_durations(text, delta, back):
    assert parse_duration(text) == delta
    assert format_duration(delta) == back


@pytest.mark.parametrize("text", ["", "2x", "h", "-1h", "1.5.2h", True])
def test_bad_durations(text):
    with pytest.raises(InvalidDuration, match=repr(text).replace(".", r"\.")):
        parse_duration(text)


def test_bad_version_and_specifier_are_quoted():
    with pytest.raises(ValueError, match="'two'"):
        parse_version("two")
    with pytest.raises(InvalidSpecifier, match="'>=x'"):
        parse_specifier(">=x")


@pytest.mark.parametrize(
    ("spec", "satisfiable"),
    [
        ("<3", True),
        ("<3,>=3", False),
        ("==2.3.*,<2.3", False),
        ("==2.3.*,>=2.4", False),
        ("==2.3.*,!=2.3.0", True),
        ("~=2.3,<2", False),
        ("!=2.3,==2.3", False),
        (">=2.3,<=2.3", True),
        (">2.3,<2.3.1", True),
        (">=2.4,<3,!=2.4.0", True),
        ("==2.3.4,==2.3.5", False),
    ],
)
def test_pin_intersection_satisfiability(spec, satisfiable):
    assert is_satisfiable(SpecifierSet(spec)) is satisfiable


def test_conflicting_pins_names_the_minimal_clashing_set():
    pins = [
        pin("global", "api", "<3"),
        pin("channel:stable", "api", "!=2.0"),
        pin("instance:x", "api", ">=3.1"),
    ]
    clash = conflicting_pins(pins)
    assert clash is not None
    assert [str(p.scope) for p in clash] == ["global", "instance:x"]
    assert conflicting_pins(pins[:2]) is None


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("local", "'local'"),
        ("channel:", "''"),
        ("team:ops", "'team:ops'"),
        ("instance:Bad", "'Bad'"),
    ],
)
def test_bad_pin_scopes(text, quoted):
    with pytest.raises(InputError, match=quoted):
        PinScope.parse(text)


@pytest.mark.parametrize(
    ("moment", "is_open"),
    [
        ("2026-11-26T00:59", False),  # 01:59 in Berlin (UTC+1)
        ("2026-11-26T01:00", True),  # 02:00 in Berlin: opens
        ("2026-11-26T04:59", True),
        ("2026-11-26T05:00", False),  # 4 h later: closed
        ("2026-07-01T00:30", True),  # summer time: 02:30 in Berlin (UTC+2)
    ],
)
def test_maintenance_window_in_its_time_zone(moment, is_open):
    window = MaintenanceWindow("0 2 * * *", timedelta(hours=4), "Europe/Berlin")
    assert window.is_open(datetime.fromisoformat(moment).replace(tzinfo=UTC)) is is_open


@pytest.mark.parametrize(
    ("cron", "zone", "duration", "message"),
    [
        ("0 25 * * *", "UTC", timedelta(hours=1), "Invalid cron expression: '0 25 \\* \\* \\*'"),
        ("0 2 * * *", "Mars/Olympus", timedelta(hours=1), "Invalid time zone: 'Mars/Olympus'"),
        ("0 2 * * *", "UTC", timedelta(0), "Invalid window duration"),
    ],
)
def test_bad_maintenance_windows(cron, zone, duration, message):
    with pytest.raises(InputError, match=message):
        MaintenanceWindow(cron, duration, zone)


def test_effective_policy_prefers_the_override():
    ch = Channel("stable", Policy.AUTO_UPDATE)
    assert effective_policy(ch, None) is Policy.AUTO_UPDATE
    assert effective_policy(ch, Policy.FROZEN) is Policy.FROZEN


def r(*events):
    return AffectedRange.parse({"type": "ECOSYSTEM", "events": list(events)})


@pytest.mark.parametrize(
    ("rng", "version", "affected"),
    [
        (r({"introduced": "0"}, {"fixed": "1.2"}), "0.0.0b0", True),
        (r({"introduced": "0"}, {"fixed": "1.2"}), "0.0.0.dev0", True),
        (r({"introduced": "0"}, {"fixed": "1.2"}), "1.1.9", True),
        (r({"introduced": "0"}, {"fixed": "1.2"}), "1.2", False),
        (r({"introduced": "1.0"}, {"last_affected": "1.4"}), "1.4", True),
        (r({"introduced": "1.0"}, {"last_affected": "1.4"}), "1.4.1", False),
        (r({"introduced": "1.0"}, {"last_affected": "1.4"}), "0.9", False),
        (r({"introduced": "1.0"}, {"limit": "1.3"}), "1.2.9", True),
        (r({"introduced": "1.0"}, {"limit": "1.3"}), "1.3", False),
        (
            r(
                {"introduced": "2.0"},
                {"fixed": "2.3.5"},
                {"introduced": "2.4.0"},
                {"fixed": "2.4.1"},
            ),
            "2.3.9",
            False,
        ),
        (
            r(
                {"introduced": "2.0"},
                {"fixed": "2.3.5"},
                {"introduced": "2.4.0"},
                {"fixed": "2.4.1"},
            ),
            "2.4.0",
            True,
        ),
        (
            r(
                {"introduced": "2.0"},
                {"fixed": "2.3.5"},
                {"introduced": "2.4.0"},
                {"fixed": "2.4.1"},
            ),
            "2.3.4",
            True,
        ),
        (r({"introduced": "2.0"}), "9.9", True),
        (
            r({"introduced": "1.0"}, {"fixed": "1.2"}, {"introduced": "1.2"}, {"fixed": "1.3"}),
            "1.2",
            True,
        ),
        (
            r({"introduced": "1.0"}, {"fixed": "1.2"}, {"introduced": "1.2"}, {"fixed": "1.3"}),
            "1.3",
            False,
        ),
    ],
)
def test_osv_range_semantics(rng, version, affected):
    assert rng.covers(Version(version)) is affected


def test_explicit_versions_list():
    adv = advisory(versions=["2.3.0", "2.3.1"])
    assert adv.affects(Version("2.3.1")) and not adv.affects(Version("2.3.2"))


@pytest.mark.parametrize(
    ("severity", "age", "deadline", "enforced"),
    [
        ("critical", timedelta(hours=1), timedelta(hours=24), True),
        ("high", timedelta(days=6), timedelta(days=7), False),
        ("high", timedelta(days=7), timedelta(days=7), True),
        ("medium", timedelta(days=29), timedelta(days=30), False),
        ("medium", timedelta(days=30, seconds=1), timedelta(days=30), True),
        ("low", timedelta(days=999), None, False),
    ],
)
def test_deadlines_and_enforcement(severity, age, deadline, enforced):
    adv = advisory(severity=severity, published_at=NOW - age, versions=["1.0"])
    expected = None if deadline is None else adv.published_at + deadline
    assert deadline_of(adv) == expected
    assert is_enforced(adv, NOW) is enforced


FORBIDDEN = {"sqlmodel", "sqlalchemy", "fastapi", "prefect", "httpx", "uvicorn", "alembic"}


def test_core_imports_no_io_library():
    core = Path(__file__).resolve().parents[2] / "fleet" / "core"
    offenders = []
    for path in sorted(core.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []


def test_core_reads_no_clock():
    core = Path(__file__).resolve().parents[2] / "fleet" / "core"
    calls = [
        f"{p.name}: {m}"
        for p in sorted(core.glob("*.py"))
        for m in ("datetime.now(", "datetime.utcnow(", "time.time(", "date.today(")
        if m in p.read_text()
    ]
    assert calls == []
