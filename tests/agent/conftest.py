"""Fixtures for the agent tests: demo artifacts, real agent processes, a real artifact server."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fleet.artifacts import ArtifactRef, build_demo_artifact
from tests.agent.support import COMPONENTS, VERSIONS, AgentProcess


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("store")


@pytest.fixture(scope="session")
def refs(store: Path) -> dict[str, ArtifactRef]:
    """Demo artifacts: every component at every version, plus a broken 'sick' build."""
    built = {}
    for name in COMPONENTS:
        for version in VERSIONS:
            built[f"{name}=={version}"] = build_demo_artifact(store, name, version, size=64_000)
    built["api==9.9.9"] = build_demo_artifact(store, "api", "9.9.9", healthy=False)
    return built


@pytest.fixture
def start_agent(tmp_path: Path) -> Iterator[Callable[..., AgentProcess]]:
    """Start agents (each with its own root unless given one); all are stopped afterwards."""
    started: list[AgentProcess] = []

    def start(*extra: str, root: Path | None = None, wait: bool = True) -> AgentProcess:
        n = len(started)
        agent = AgentProcess(root or tmp_path / f"root{n}", tmp_path / f"agent{n}", *extra)
        started.append(agent)
        return agent.start(wait=wait)

    yield start
    for agent in started:
        agent.stop()


@pytest.fixture
def agent(start_agent: Callable[..., AgentProcess]) -> AgentProcess:
    return start_agent()


@pytest.fixture(scope="session")
def artifact_server(store: Path, refs: dict[str, ArtifactRef]) -> Iterator[str]:
    """`python -m http.server` serving the store on a loopback port: its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1", "0"],
        cwd=store,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "Serving HTTP on 127.0.0.1 port N (http://...) ..."
    port = int(line.split(" port ")[1].split()[0])
    base = f"http://127.0.0.1:{port}"
    try:
        yield base
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()
