"""CommandTarget's runner: the operator's command gets the manifest; its exit code decides."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from fleet.agent.command import CommandRunner
from fleet.agent.errors import (
    CommandFailed,
    HealthCheckFailed,
    PermanentTargetError,
    TransientTargetError,
)
from fleet.agent.models import Manifest
from fleet.agent.target import Target

MANIFEST = Manifest.model_validate(
    {
        "instance": "globex-eu",
        "revision": 7,
        "manifest_hash": "c0ffee00" * 8,
        "components": {
            "api": {"version": "2.4.1", "url": "https://a.example/api.tgz", "sha256": "a" * 64},
            "api-gateway": {"version": "1.0", "url": "/srv/gw.tgz", "sha256": "b" * 64},
        },
    }
)


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_apply_passes_the_manifest_on_stdin_and_names_versions_in_the_environment(
    tmp_path: Path,
) -> None:
    deploy = script(
        tmp_path / "deploy",
        'cat > "$OUT/stdin.json"\n'
        'env | grep ^FLEET_ | sort > "$OUT/env"\n'
        'echo "$@" > "$OUT/args"\n'
        'echo "upgraded $FLEET_INSTANCE"\n',
    )
    runner: Target = CommandRunner(
        apply_command=f"{deploy} --release {{instance}} --set rev={{revision}} '{{manifest_hash}}'",
        env={"OUT": str(tmp_path)},
    )
    result = runner.apply(MANIFEST)
    assert result.changed and result.message == "apply command succeeded: upgraded globex-eu"
    assert json.loads((tmp_path / "stdin.json").read_text()) == MANIFEST.model_dump(mode="json")
    env = (tmp_path / "env").read_text().splitlines()
    assert "FLEET_INSTANCE=globex-eu" in env
    assert "FLEET_REVISION=7" in env
    assert f"FLEET_MANIFEST_HASH={MANIFEST.manifest_hash}" in env
    assert "FLEET_VERSIONS=api=2.4.1 api-gateway=1.0" in env
    assert "FLEET_VERSION_API=2.4.1" in env
    assert "FLEET_VERSION_API_GATEWAY=1.0" in env
    args = (tmp_path / "args").read_text().split()
    assert args == ["--release", "globex-eu", "--set", "rev=7", MANIFEST.manifest_hash]


@pytest.mark.parametrize(
    ("body", "error", "text"),
    [
        ("echo 'helm: lock held' >&2; exit 75", TransientTargetError, "exited 75: helm: lock held"),
        ("echo 'chart not found' >&2; exit 1", CommandFailed, "exited 1: chart not found"),
        ("sleep 5", TransientTargetError, "timed out after 0.3s"),
    ],
)
def test_the_exit_code_decides_how_a_failure_is_classified(
    tmp_path: Path, body: str, error: type[Exception], text: str
) -> None:
    runner = CommandRunner(apply_command=str(script(tmp_path / "deploy", body)), timeout=0.3)
    with pytest.raises(error) as info:
        runner.apply(MANIFEST)
    assert text in str(info.value)
    if error is CommandFailed:
        assert isinstance(info.value, PermanentTargetError)


def test_a_missing_command_or_a_bad_template_is_permanent(tmp_path: Path) -> None:
    with pytest.raises(CommandFailed, match="not found: '/nonexistent/helm'"):
        CommandRunner(apply_command="/nonexistent/helm upgrade").apply(MANIFEST)
    with pytest.raises(PermanentTargetError, match=r"\{cluster\}"):
        CommandRunner(apply_command="helm --kube {cluster}").apply(MANIFEST)
    with pytest.raises(PermanentTargetError, match="no rollback command"):
        CommandRunner(apply_command="true").rollback()


def test_state_command_makes_apply_idempotent_and_health_uses_its_exit_code(
    tmp_path: Path,
) -> None:
    state_file = tmp_path / "state.json"
    deploy = script(
        tmp_path / "deploy",
        f'echo "{{\\"manifest_hash\\": \\"$FLEET_MANIFEST_HASH\\"}}" > {state_file}\n'
        f"echo applied >> {tmp_path / 'calls'}\n",
    )
    show = script(tmp_path / "show", f"cat {state_file} 2>/dev/null || echo '{{}}'\n")
    check = script(tmp_path / "check", f"test -f {tmp_path / 'down'} && exit 3; echo fine\n")
    runner = CommandRunner(
        apply_command=str(deploy), state_command=str(show), health_command=str(check)
    )
    assert runner.state().manifest_hash is None
    assert runner.apply(MANIFEST).changed
    again = runner.apply(MANIFEST)
    assert not again.changed and "already current" in again.message
    assert (tmp_path / "calls").read_text() == "applied\n"
    assert runner.state().manifest_hash == MANIFEST.manifest_hash
    assert runner.health().raise_for_health().detail == "fine"
    (tmp_path / "down").touch()
    report = runner.health()
    assert not report.healthy and "exited 3" in report.detail
    with pytest.raises(HealthCheckFailed):
        report.raise_for_health()


def test_a_state_command_printing_garbage_is_permanent(tmp_path: Path) -> None:
    runner = CommandRunner(apply_command="true", state_command="echo not-json")
    with pytest.raises(PermanentTargetError, match="'not-json"):
        runner.state()


def test_rollback_command_gets_the_target_release(tmp_path: Path) -> None:
    back = script(tmp_path / "back", f'echo "to=$FLEET_ROLLBACK_TO" > {tmp_path / "out"}\n')
    runner = CommandRunner(apply_command="true", rollback_command=f"{back} {{manifest_hash}}")
    result = runner.rollback("abcdef12")
    assert result.changed and result.manifest_hash == "abcdef12"
    assert (tmp_path / "out").read_text() == "to=abcdef12\n"
