"""Injected faults reach the client as the right kind of error: transient ones are retryable."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from fleet.agent.client import AgentClient
from fleet.agent.errors import (
    HealthCheckFailed,
    PermanentTargetError,
    TargetUnavailable,
    TargetUnreachable,
    TransientTargetError,
)
from fleet.agent.faults import Faults
from fleet.artifacts import ArtifactRef
from tests.agent.support import TOKEN, AgentProcess, make_manifest


@pytest.fixture
def faulty(agent: AgentProcess) -> Callable[..., AgentClient]:
    """Switch the running agent's faults; returns a client with the given timeout."""

    def switch(timeout: float = 5.0, **faults: float | bool | int) -> AgentClient:
        with agent.client() as admin:
            admin.set_faults(Faults.model_validate(faults))
        return agent.client(timeout=timeout)

    return switch


def test_injected_503s_are_transient(faulty: Callable[..., AgentClient]) -> None:
    with faulty(error_rate=1.0) as client, pytest.raises(TargetUnavailable) as info:
        client.state()
    assert isinstance(info.value, TransientTargetError)
    assert "HTTP 503" in str(info.value)


def test_a_share_of_503s_fails_about_that_share_of_requests(
    faulty: Callable[..., AgentClient],
) -> None:
    failures = 0
    with faulty(error_rate=0.3, seed=7) as client:
        for _ in range(100):
            try:
                client.state()
            except TargetUnavailable:
                failures += 1
    assert 15 <= failures <= 45, failures


def test_connection_resets_are_transient(faulty: Callable[..., AgentClient]) -> None:
    with faulty(reset_rate=1.0) as client, pytest.raises(TargetUnreachable) as info:
        client.state()
    assert isinstance(info.value, TransientTargetError)
    cause = info.value.__cause__
    assert isinstance(cause, httpx.ReadError), repr(cause)
    assert "Connection reset by peer" in str(cause)


def test_a_hang_past_the_client_timeout_is_transient(faulty: Callable[..., AgentClient]) -> None:
    t0 = time.monotonic()
    with faulty(timeout=0.5, hang_rate=1.0) as client, pytest.raises(TargetUnreachable) as info:
        client.health()
    assert 0.4 < time.monotonic() - t0 < 5
    assert "timed out" in str(info.value)
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)


def test_latency_is_added_and_beyond_the_timeout_is_transient(
    faulty: Callable[..., AgentClient],
) -> None:
    with faulty(latency_ms=150) as client:
        t0 = time.monotonic()
        client.state()
        assert time.monotonic() - t0 >= 0.15
    with faulty(timeout=0.05, latency_ms=300) as client, pytest.raises(TargetUnreachable):
        client.state()


def test_faults_can_be_switched_off_again(faulty: Callable[..., AgentClient]) -> None:
    with faulty(error_rate=1.0) as client, pytest.raises(TargetUnavailable):
        client.state()
    with faulty() as client:
        assert client.state().manifest_hash is None


def test_connection_refused_is_transient(agent: AgentProcess) -> None:
    url = agent.url
    agent.stop()
    with AgentClient(url, TOKEN) as client, pytest.raises(TargetUnreachable) as info:
        client.state()
    assert isinstance(info.value.__cause__, httpx.ConnectError)


def test_fault_options_at_start_up(
    start_agent: Callable[..., AgentProcess], refs: dict[str, ArtifactRef]
) -> None:
    flaky = start_agent("--fault-error-rate", "1", wait=False)
    deadline = time.monotonic() + 30
    while not flaky.port_file.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    flaky.url = f"http://127.0.0.1:{flaky.port_file.read_text()}"
    with flaky.client() as client:
        with pytest.raises(TargetUnavailable):
            client.apply(make_manifest(refs, {"api": "1.0.0"}))
        assert client.set_faults(Faults()).error_rate == 0
        client.apply(make_manifest(refs, {"api": "1.0.0"}))

    sick = start_agent("--fault-unhealthy")
    with sick.client() as client:
        client.apply(make_manifest(refs, {"api": "1.0.0"}))
        with pytest.raises(HealthCheckFailed) as info:
            client.health().raise_for_health()
        assert isinstance(info.value, PermanentTargetError)
