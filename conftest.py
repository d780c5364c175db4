"""The names the docstring examples of `fleet/core` use (they run in the test command).

`state` is the example fleet (examples/fleet.yaml, whose story
examples/README.md tells) and `now` the time that story is told at.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def _doctest_names(request: pytest.FixtureRequest) -> None:
    if not isinstance(request.node, pytest.DoctestItem):
        return
    from fleet.core.advisories import Advisory, Severity
    from fleet.core.fleetfile import parse_fleet_text
    from fleet.core.manifests import Manifest, ManifestStatus, Revision
    from fleet.core.pins import Pin, PinScope
    from fleet.core.plan import compile_plan

    text = (ROOT / "examples" / "fleet.yaml").read_text(encoding="utf-8")
    file = parse_fleet_text(text)
    state = file.to_state()
    now = datetime(2026, 11, 26, 12, tzinfo=UTC)

    def pin(scope: str, spec: str, reason: str) -> Pin:
        return Pin(PinScope.parse(scope), "api", SpecifierSet(spec), reason, "ops", now)

    names: dict[str, Any] = request.getfixturevalue("doctest_namespace")
    names.update(
        UTC=UTC,
        datetime=datetime,
        timedelta=timedelta,
        timezone=timezone,
        Version=Version,
        SpecifierSet=SpecifierSet,
        text=text,
        file=file,
        state=state,
        now=now,
        plan=compile_plan(state, now),
        critical=Advisory(
            "FLEET-2026-0001",
            "api",
            Severity.CRITICAL,
            now - timedelta(hours=2),
            versions=frozenset({Version("2.3.0"), Version("2.3.1")}),
        ),
        medium_published_40_days_ago=Advisory(
            "FLEET-2026-0002", "api", Severity.MEDIUM, now - timedelta(days=40)
        ),
        pin=pin("global", "<3", "3.x data migration not ready"),
        global_lt3=pin("global", "<3", "3.x data migration not ready"),
        channel_ge3=pin("channel:beta", ">=3", "beta runs 3.x"),
        history=[
            Revision(
                1,
                Manifest({"api": Version("2.3.0")}),
                ManifestStatus.SUPERSEDED,
                now - timedelta(days=38),
                deployed_at=now - timedelta(days=37),
            ),
            Revision(
                2,
                Manifest({"api": Version("2.3.1")}),
                ManifestStatus.DEPLOYED,
                now - timedelta(days=22),
                deployed_at=now - timedelta(days=21),
            ),
        ],
    )


def pytest_ignore_collect(collection_path: Path) -> bool | None:
    """Doctests are collected from the core only: the helper modules and
    conftests of tests/ (several share a name) are not collected as modules
    (pytest still loads the conftests as conftests)."""
    tests = ROOT / "tests"
    if collection_path.suffix == ".py" and tests in collection_path.parents:
        return not collection_path.name.startswith("test_")
    return None
