"""How the agent client maps answers and transport failures to transient or permanent errors."""

from __future__ import annotations

import ssl
import threading
import time
from typing import Any

import httpx
import pytest

from fleet.agent.client import AgentClient
from fleet.agent.errors import (
    ArtifactError,
    ChecksumMismatch,
    HealthCheckFailed,
    InstanceNameRejected,
    InstanceNotFound,
    ManifestRejected,
    PermanentTargetError,
    ReleaseNotFound,
    TargetBusy,
    TargetError,
    TargetUnavailable,
    TargetUnreachable,
    TransientTargetError,
    Unauthorized,
    UnsafeArchive,
)

TOKEN = "mock-token-7a1c"


def client_answering(status: int, body: Any = None, *, text: str | None = None) -> AgentClient:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        if text is not None:
            return httpx.Response(status, text=text)
        return httpx.Response(status, json=body)

    return AgentClient("http://agent.test", TOKEN, transport=httpx.MockTransport(handler))


def client_raising(exc: Exception) -> AgentClient:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return AgentClient("http://agent.test", TOKEN, transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (409, "busy", TargetBusy),
        (500, "target_error", TargetUnavailable),
        (502, None, TargetUnavailable),
        (503, "unavailable", TargetUnavailable),
        (504, None, TargetUnavailable),
        (401, "unauthorized", Unauthorized),
        (403, None, Unauthorized),
        (422, "invalid_manifest", ManifestRejected),
        (422, "checksum_mismatch", ChecksumMismatch),
        (422, "unsafe_archive", UnsafeArchive),
        (424, "artifact_unavailable", ArtifactError),
        (424, "unhealthy", HealthCheckFailed),
        (404, "release_not_found", ReleaseNotFound),
        (404, "instance_not_found", InstanceNotFound),
        (422, "invalid_instance_name", InstanceNameRejected),
        (404, None, PermanentTargetError),
        (400, "something-new", PermanentTargetError),
        (418, None, PermanentTargetError),
        # A 4xx never becomes retryable, even if its body claims so.
        (400, "busy", PermanentTargetError),
    ],
)
def test_answers_map_to_error_classes(
    status: int, code: str | None, expected: type[TargetError]
) -> None:
    body = {"error": code, "detail": f"detail for {code}"} if code else {"oops": 1}
    with client_answering(status, body) as client, pytest.raises(TargetError) as info:
        client.state()
    assert type(info.value) is expected
    assert f"HTTP {status}" in str(info.value)
    retryable = status == 409 or status >= 500
    assert isinstance(info.value, TransientTargetError) is retryable
    assert isinstance(info.value, PermanentTargetError) is not retryable
    assert TOKEN not in str(info.value)


def test_a_non_json_error_body_is_quoted() -> None:
    with (
        client_answering(400, text="<html>bad gateway config</html>") as client,
        pytest.raises(PermanentTargetError, match="bad gateway config"),
    ):
        client.health()


def test_a_success_that_is_not_json_is_transient() -> None:
    with (
        client_answering(200, text="<html>proxy login</html>") as client,
        pytest.raises(TargetUnavailable, match="not JSON"),
    ):
        client.state()


def test_a_success_with_the_wrong_shape_is_permanent() -> None:
    with (
        client_answering(200, {"healthy": "maybe"}) as client,
        pytest.raises(PermanentTargetError, match="Unexpected answer"),
    ):
        client.health()


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("[Errno 111] Connection refused"),
        httpx.ConnectTimeout("connect timed out"),
        httpx.ReadTimeout("read timed out"),
        httpx.ReadError("[Errno 104] Connection reset by peer"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.WriteError("broken pipe"),
        httpx.PoolTimeout("pool"),
    ],
)
def test_transport_failures_are_transient(exc: Exception) -> None:
    with client_raising(exc) as client, pytest.raises(TargetUnreachable) as info:
        client.rollback()
    assert isinstance(info.value, TransientTargetError)
    assert info.value.__cause__ is exc
    assert "POST http://agent.test/v1/rollback" in str(info.value)


def test_a_client_for_an_instance_of_a_host_speaks_under_its_path() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        if request.url.path == "/v1/instances":
            return httpx.Response(200, json={"instances": ["acme-prod"]})
        if request.method == "PUT":
            return httpx.Response(201, json={"instance": "acme-prod", "created": True})
        if request.url.path.endswith("/state"):
            return httpx.Response(200, json={})
        if request.url.path.endswith("/health"):
            return httpx.Response(200, json={"healthy": True})
        if request.url.path.endswith("/applies"):
            return httpx.Response(200, json=[])
        return httpx.Response(
            200,
            json={
                "instance": "acme-prod",
                "manifest_hash": "ab" * 4,
                "revision": 1,
                "changed": False,
                "message": "ok",
            },
        )

    transport = httpx.MockTransport(handler)
    with AgentClient("http://host.test/", TOKEN, instance="acme-prod", transport=transport) as c:
        assert repr(c) == "AgentClient('http://host.test', instance='acme-prod')"
        c.state()
        c.health()
        c.rollback()
        c.applies()
        assert c.instances() == ["acme-prod"]
        assert c.create_instance("acme-prod") is True
    assert seen == [
        "GET /v1/instances/acme-prod/state",
        "GET /v1/instances/acme-prod/health",
        "POST /v1/instances/acme-prod/rollback",
        "GET /v1/instances/acme-prod/applies",
        "GET /v1/instances",
        "PUT /v1/instances/acme-prod",
    ]


def test_clients_opened_at_once_by_many_threads_share_one_tls_context(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A rollout's deploy threads open their clients together as it starts: the CA
    store is loaded once for all of them, not once per thread."""
    from fleet.agent import client as client_module

    built: list[int] = []
    real = ssl.create_default_context

    def counted(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        built.append(threading.get_ident())
        time.sleep(0.05)  # long enough for every thread to arrive meanwhile
        return real(*args, **kwargs)

    client_module._tls_context_once.cache_clear()
    monkeypatch.setattr(client_module.ssl, "create_default_context", counted)
    start = threading.Barrier(16)
    contexts: list[ssl.SSLContext] = []

    def open_one() -> None:
        start.wait()
        with AgentClient("https://agent.invalid", "token", instance="acme-prod") as c:
            contexts.append(client_module._tls_context())
            assert c.instance == "acme-prod"

    threads = [threading.Thread(target=open_one) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(built) == 1 and len(contexts) == 16
    assert all(c is contexts[0] for c in contexts)
    client_module._tls_context_once.cache_clear()
