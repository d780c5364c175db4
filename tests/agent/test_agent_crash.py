"""SIGKILL at random moments during applies: `current` is always the old release or the new one."""

from __future__ import annotations

import json
import os
import random
import threading
import time
from pathlib import Path

import pytest

from fleet.agent.errors import TargetError
from fleet.agent.models import Manifest
from fleet.artifacts import ArtifactRef
from tests.agent.support import AgentProcess, make_manifest

ITERATIONS = 20
V1 = {"api": "1.0.0", "web": "1.0.0", "worker": "1.0.0"}
V2 = {"api": "2.0.0", "web": "2.0.0", "worker": "2.0.0"}


def whole_current(root: Path) -> str | None:
    """The hash `current` points at, after checking that release is complete."""
    link = root / "current"
    if not link.is_symlink():
        return None
    target = os.readlink(link)
    assert target.startswith("releases/"), target
    release = root / target
    meta = json.loads((release / ".release.json").read_text())
    manifest = Manifest.model_validate(meta["manifest"])
    assert manifest.manifest_hash == release.name
    assert sorted(p.name for p in release.iterdir()) == sorted([".release.json", *V1])
    for name, spec in manifest.components.items():
        component = release / name
        assert (component / "VERSION").read_text() == f"{spec.version}\n"
        assert (component / "payload.bin").stat().st_size == 64_000
        assert os.access(component / "bin" / "healthcheck", os.X_OK)
    return release.name


@pytest.mark.slow
def test_a_killed_apply_never_leaves_a_partial_current(
    tmp_path: Path, refs: dict[str, ArtifactRef]
) -> None:
    rng = random.Random(20261126)
    root = tmp_path / "root"
    agent = AgentProcess(root, tmp_path / "agent", "--apply-delay-ms", "40", entry="fleet.agent")
    agent.start()
    with agent.client() as client:
        t0 = time.monotonic()
        client.apply(make_manifest(refs, V1, salt="base"))
        # Kill moments are spread over one apply's duration as measured here (load varies).
        duration = max(time.monotonic() - t0, 0.1)
    agent.kill()
    current = whole_current(root)
    outcomes = {"old": 0, "new": 0}
    mid_apply = 0
    try:
        for i in range(ITERATIONS):
            agent.start()
            with agent.client() as client:
                state = client.state()
            assert state.manifest_hash == current
            assert list((root / "staging").iterdir()) == [], "restart must clear staging"
            manifest = make_manifest(refs, V2 if i % 2 else V1, revision=i + 2, salt=str(i))

            def apply(m: Manifest = manifest) -> None:
                try:
                    with agent.client(timeout=10) as c:
                        c.apply(m)
                except TargetError:
                    pass  # the kill cut the connection

            worker = threading.Thread(target=apply)
            worker.start()
            time.sleep(rng.uniform(0.0, 1.3 * duration))
            agent.kill()
            worker.join()
            if any((root / "staging").iterdir()):
                mid_apply += 1
            after = whole_current(root)
            assert after in (current, manifest.manifest_hash), (i, after)
            outcomes["old" if after == current else "new"] += 1
            current = after
        agent.start()
        with agent.client() as client:
            assert client.state().manifest_hash == current
            assert client.health().healthy
    finally:
        agent.stop()
    assert mid_apply >= ITERATIONS // 4, (mid_apply, outcomes)
    assert outcomes["old"] and outcomes["new"], outcomes
