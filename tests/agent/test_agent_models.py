"""The manifest the agent accepts: unknown fields and unsafe names are refused, naming them."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from fleet.agent.errors import HealthCheckFailed, ManifestRejected, PermanentTargetError
from fleet.agent.models import ComponentHealth, HealthReport, parse_manifest
from fleet.core.errors import InputError
from tests.agent.support import ROOT

SHA = "a" * 64


def manifest(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "instance": "acme-prod",
        "revision": 3,
        "manifest_hash": "0123abcd" * 8,
        "components": {"api": {"version": "2.4.1", "url": "file:///srv/a.tar.gz", "sha256": SHA}},
    }
    body.update(changes)
    return body


def test_a_valid_manifest_parses() -> None:
    m = parse_manifest(manifest())
    assert m.versions() == {"api": "2.4.1"}
    assert m.revision == 3


@pytest.mark.parametrize(
    ("body", "quoted"),
    [
        (manifest(extra=1), "'extra'"),
        (
            manifest(components={"api": {"version": "1", "url": "/a", "sha256": SHA, "x": 2}}),
            "'x'",
        ),
        (manifest(components={"../etc": {"version": "1", "url": "/a", "sha256": SHA}}), "'../etc'"),
        (manifest(components={"a/b": {"version": "1", "url": "/a", "sha256": SHA}}), "'a/b'"),
        (manifest(components={"..": {"version": "1", "url": "/a", "sha256": SHA}}), "'..'"),
        (manifest(components={"Api": {"version": "1", "url": "/a", "sha256": SHA}}), "'Api'"),
        (manifest(components={"9api": {"version": "1", "url": "/a", "sha256": SHA}}), "'9api'"),
        (manifest(components={"a" * 64: {"version": "1", "url": "/a", "sha256": SHA}}), "a" * 64),
        (manifest(components={"api": {"version": "1", "url": "/a", "sha256": "zz"}}), "'zz'"),
        (manifest(components={"api": {"version": "1/2", "url": "/a", "sha256": SHA}}), "'1/2'"),
        (manifest(manifest_hash="../../x"), "'../../x'"),
        (manifest(instance="Acme"), "'Acme'"),
        (manifest(revision=0), "revision"),
        ({"instance": "acme-prod"}, "revision: field required"),
    ],
)
def test_bad_manifests_are_rejected_naming_the_bad_value(body: dict[str, Any], quoted: str) -> None:
    with pytest.raises(ManifestRejected) as info:
        parse_manifest(body)
    assert quoted in str(info.value)
    assert isinstance(info.value, PermanentTargetError)
    assert isinstance(info.value, InputError)


def test_raise_for_health_names_the_failing_components() -> None:
    report = HealthReport(
        healthy=False,
        manifest_hash="abc12345",
        components={
            "api": ComponentHealth(healthy=True, checked=True, detail="exit 0"),
            "web": ComponentHealth(healthy=False, checked=True, detail="exit 1: down"),
        },
    )
    with pytest.raises(HealthCheckFailed, match=r"web: exit 1: down") as info:
        report.raise_for_health()
    assert "api" not in str(info.value)
    ok = HealthReport(healthy=True)
    assert ok.raise_for_health() is ok


def test_the_agent_imports_neither_prefect_nor_the_database() -> None:
    code = (
        "import sys, fleet.agent.server, fleet.agent.__main__\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules}"
        " & {'prefect', 'sqlalchemy', 'sqlmodel', 'alembic', 'yaml'})\n"
        "print(heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]"
