"""`fleet plan FILE`: the table, the JSON, selectors and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fleet.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "fleet.yaml"
AT = "2026-11-26T12:00:00Z"


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_human_plan_of_the_example(capsys):
    code, out, _ = run(capsys, "plan", str(EXAMPLE), "--at", AT)
    assert code == 0
    assert out.startswith(f"Plan at {AT}: 12 instances:")
    header = next(line for line in out.splitlines() if line.startswith("INSTANCE"))
    assert header.split() == [
        "INSTANCE",
        "CHANNEL",
        "POLICY",
        "DECISION",
        "COMPONENT",
        "FROM",
        "->",
        "TO",
        "REASON",
    ]
    assert "security fix for FLEET-2026-0007" in out
    assert "needs-approval(2)" in out


def test_json_plan_has_every_documented_key(capsys):
    code, out, _ = run(capsys, "plan", str(EXAMPLE), "--at", AT, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["at"] == AT
    assert len(data["instances"]) == 12
    keys = {
        "instance",
        "channel",
        "policy",
        "decision",
        "approvals_required",
        "components",
        "advisories",
        "pin_overrides",
        "warnings",
        "errors",
    }
    decisions = {"noop", "deploy", "needs-approval", "skip-frozen", "enforce-security", "error"}
    for item in data["instances"]:
        assert keys <= set(item)
        assert item["decision"] in decisions
        for comp in item["components"].values():
            assert set(comp) == {"from", "to", "reason"}


def test_json_is_byte_for_byte_deterministic():
    cmd = [sys.executable, "-m", "fleet.cli.main", "plan", str(EXAMPLE), "--at", AT, "--json"]
    first = subprocess.run(cmd, capture_output=True, check=True).stdout
    second = subprocess.run(cmd, capture_output=True, check=True).stdout
    assert first == second and first


def test_selectors(capsys):
    _, out, _ = run(capsys, "plan", str(EXAMPLE), "--at", AT, "--json", "--channel", "lts")
    assert {i["channel"] for i in json.loads(out)["instances"]} == {"lts"}
    _, out, _ = run(
        capsys,
        "plan",
        str(EXAMPLE),
        "--at",
        AT,
        "--json",
        "--instance",
        "acme-prod",
        "--instance",
        "globex-eu",
    )
    assert [i["instance"] for i in json.loads(out)["instances"]] == ["acme-prod", "globex-eu"]


def test_one_instance_error_does_not_hide_the_others(tmp_path, capsys):
    data = yaml.safe_load(EXAMPLE.read_text())
    data["instances"][0]["current"]["api"] = "9.9.9"
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    code, out, _ = run(capsys, "plan", str(path), "--at", AT, "--json")
    assert code == 0
    instances = json.loads(out)["instances"]
    assert instances[0]["decision"] == "error"
    assert instances[0]["errors"] == ["api 9.9.9 is not in the version registry"]
    assert all(i["decision"] != "error" for i in instances[1:])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--at", "tomorrow"], "Invalid --at time: 'tomorrow'"),
        (["--at", "2026-11-26T12:00:00"], "has no time zone"),
        (["--instance", "nobody"], "Unknown instance: 'nobody'"),
        (["--channel", "stabel"], "Unknown channel: 'stabel'"),
        (["--label", "region"], "Invalid --label: 'region'"),
    ],
)
def test_bad_arguments_exit_2_naming_the_value(capsys, args, message):
    code, _, err = run(capsys, "plan", str(EXAMPLE), *args)
    assert code == 2
    assert message in err


def test_invalid_file_exits_2_listing_problems(tmp_path, capsys):
    data = yaml.safe_load(EXAMPLE.read_text())
    data["instances"][0]["channel"] = "stabel"
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    code, _, err = run(capsys, "plan", str(path), "--at", AT)
    assert code == 2
    assert "unknown channel 'stabel'" in err


def test_console_script_is_installed():
    fleet = Path(sys.executable).with_name("fleet")
    result = subprocess.run(
        [str(fleet), "plan", str(EXAMPLE), "--at", AT, "--instance", "initech-prod"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "initech-prod" in result.stdout and "enforce-security" in result.stdout


def test_plan_json_is_one_instance_per_line_and_parses_to_the_plan(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from datetime import datetime

    from fleet.core.fleetfile import parse_fleet_text
    from fleet.core.plan import compile_plan

    code = main(["plan", str(EXAMPLE), "--json", "--at", "2026-11-26T12:00:00Z"])
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    state = parse_fleet_text(EXAMPLE.read_text()).to_state()
    plan = compile_plan(state, datetime.fromisoformat("2026-11-26T12:00:00+00:00"))
    assert json.loads(out) == plan.to_json()
    assert len(lines) == len(plan.instances) + 2  # the head, one line each, the tail
    assert '"acme-prod"' in lines[1]
