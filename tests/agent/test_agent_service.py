"""The agent as a real process on a loopback port, with artifacts from a real HTTP server."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from fleet.agent.client import AgentClient
from fleet.agent.errors import (
    ArtifactError,
    ChecksumMismatch,
    HealthCheckFailed,
    ReleaseNotFound,
    TargetBusy,
    Unauthorized,
)
from fleet.agent.installation import Installation
from fleet.agent.server import QuietServer
from fleet.agent.service import AgentState, create_app
from fleet.artifacts import ArtifactRef
from fleet.cli.main import main
from tests.agent.support import TOKEN, AgentProcess, make_manifest

V1 = {"api": "1.0.0", "web": "1.0.0"}
V2 = {"api": "2.0.0", "web": "2.0.0", "worker": "2.0.0"}
ROUTES = [
    ("POST", "/v1/apply"),
    ("GET", "/v1/state"),
    ("GET", "/v1/health"),
    ("POST", "/v1/rollback"),
    ("GET", "/v1/applies"),
    ("GET", "/v1/faults"),
    ("PUT", "/v1/faults"),
    ("GET", "/nowhere"),
]


def test_every_route_needs_the_token_and_the_token_is_never_echoed(
    agent: AgentProcess, refs: dict[str, ArtifactRef]
) -> None:
    body = make_manifest(refs, V1).model_dump(mode="json")
    for header in (None, "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer"):
        headers = {"Authorization": header} if header else {}
        for method, path in ROUTES:
            r = httpx.request(method, agent.url + path, headers=headers, json=body)
            assert r.status_code == 401, (method, path, header)
            assert r.json()["error"] == "unauthorized"
            assert r.headers["www-authenticate"] == "Bearer"
            assert TOKEN not in r.text
    assert not (agent.root / "current").exists()
    with agent.client() as client:
        client.apply(make_manifest(refs, V1))
        for method, path in ROUTES[1:]:
            r = client._http.request(method, path, json={})
            assert TOKEN not in r.text
    with AgentClient(agent.url, "wrong") as wrong, pytest.raises(Unauthorized, match="401"):
        wrong.state()
    agent.stop()
    assert TOKEN not in agent.stderr()
    assert "401" in agent.stderr()


def test_apply_over_http_then_idempotent_reapply_is_fast(
    agent: AgentProcess, refs: dict[str, ArtifactRef], artifact_server: str
) -> None:
    m = make_manifest(refs, V2, base_url=artifact_server)
    with agent.client() as client:
        first = client.apply(m)
        assert first.changed
        state = client.state()
        assert state.manifest_hash == m.manifest_hash
        assert state.components == V2
        assert (agent.root / "current" / "worker" / "VERSION").read_text() == "2.0.0\n"
        assert client.health().raise_for_health().healthy
        timings = []
        for _ in range(20):
            t0 = time.perf_counter()
            again = client.apply(m)
            timings.append(time.perf_counter() - t0)
            assert not again.changed and "already current" in again.message
        timings.sort()
        assert timings[len(timings) // 2] < 0.020, timings
        assert [e.outcome for e in client.applies()] == ["applied"] + ["noop"] * 20


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in (root / "releases").rglob("*"))


def test_bad_requests_get_4xx_with_a_clear_message_and_touch_nothing(
    agent: AgentProcess, refs: dict[str, ArtifactRef], artifact_server: str
) -> None:
    good = make_manifest(refs, V1)
    with agent.client() as client:
        client.apply(good)
        before = _tree(agent.root)
        raw = good.model_dump(mode="json")
        headers = {"Authorization": f"Bearer {TOKEN}"}

        r = httpx.post(f"{agent.url}/v1/apply", headers=headers, json={**raw, "force": True})
        assert r.status_code == 422 and "unknown field 'force'" in r.json()["detail"]
        bad_name = {**raw, "components": {"../etc": raw["components"]["api"]}}
        r = httpx.post(f"{agent.url}/v1/apply", headers=headers, json=bad_name)
        assert r.status_code == 422 and "'../etc'" in r.json()["detail"]
        r = httpx.post(f"{agent.url}/v1/apply", headers=headers, content=b"{not json")
        assert r.status_code == 422

        m2 = make_manifest(refs, V2, revision=2, base_url=artifact_server)
        api = m2.components["api"]
        cases: list[tuple[dict[str, object], type[Exception], str]] = [
            ({"sha256": "1" * 64}, ChecksumMismatch, "expected " + "1" * 64),
            ({"url": f"{artifact_server}/api/none.tar.gz"}, ArtifactError, "HTTP 404"),
            ({"url": "http://127.0.0.1:9/x.tar.gz"}, ArtifactError, "Artifact unreachable"),
        ]
        for change, error, text in cases:
            bad = m2.model_copy(
                update={"components": {**m2.components, "api": api.model_copy(update=change)}}
            )
            with pytest.raises(error) as info:
                client.apply(bad)
            assert text in str(info.value)
        with pytest.raises(ReleaseNotFound, match="'abcdef12' is not on disk"):
            client.rollback("abcdef12")
        assert _tree(agent.root) == before
        assert client.state().manifest_hash == good.manifest_hash


def test_rollback_through_the_agent(agent: AgentProcess, refs: dict[str, ArtifactRef]) -> None:
    m1 = make_manifest(refs, V1, revision=1)
    m2 = make_manifest(refs, V2, revision=2)
    with agent.client() as client:
        client.apply(m1)
        client.apply(m2)
        result = client.rollback()
        assert result.manifest_hash == m1.manifest_hash and result.changed
        assert client.state().components == V1
        assert client.rollback(m2.manifest_hash).manifest_hash == m2.manifest_hash
        assert [e.op for e in client.applies()] == ["apply", "apply", "rollback", "rollback"]


def test_an_unhealthy_release_is_reported_per_component(
    agent: AgentProcess, refs: dict[str, ArtifactRef]
) -> None:
    with agent.client() as client:
        client.apply(make_manifest(refs, {"api": "9.9.9", "web": "1.0.0"}))
        report = client.health()
        assert not report.healthy
        assert report.components["web"].healthy
        with pytest.raises(HealthCheckFailed, match="api: exit 1"):
            report.raise_for_health()


def test_the_unhealthy_switch_fails_every_health_check(
    start_agent: Callable[..., AgentProcess], refs: dict[str, ArtifactRef]
) -> None:
    sick = start_agent("--fault-unhealthy")
    with sick.client() as client:
        client.apply(make_manifest(refs, V1))
        report = client.health()
        assert not report.healthy
        assert {c.detail for c in report.components.values()} == {"injected fault: unhealthy"}
        with pytest.raises(HealthCheckFailed):
            report.raise_for_health()


def test_twenty_concurrent_applies_leave_exactly_one_coherent_current(
    start_agent: Callable[..., AgentProcess], refs: dict[str, ArtifactRef]
) -> None:
    agent = start_agent("--apply-delay-ms", "20")
    manifests = [
        make_manifest(refs, V1 if i % 2 else V2, revision=i + 1, salt=str(i)) for i in range(20)
    ]
    outcomes: list[object] = [None] * 20
    barrier = threading.Barrier(20)

    def apply(i: int) -> None:
        with agent.client() as client:
            barrier.wait()
            try:
                outcomes[i] = client.apply(manifests[i])
            except TargetBusy as exc:
                outcomes[i] = exc

    threads = [threading.Thread(target=apply, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    applied = [i for i, o in enumerate(outcomes) if not isinstance(o, TargetBusy)]
    busy = [o for o in outcomes if isinstance(o, TargetBusy)]
    assert len(applied) + len(busy) == 20
    assert applied and busy, outcomes
    assert all("409" in str(b) for b in busy)

    with agent.client() as client:
        state = client.state()
        log = client.applies()
    winners = {manifests[i].manifest_hash for i in applied}
    assert state.manifest_hash in winners
    expected = next(m for m in manifests if m.manifest_hash == state.manifest_hash)
    current = agent.root / "current"
    meta = json.loads((current / ".release.json").read_text())
    assert meta["manifest"]["manifest_hash"] == state.manifest_hash
    for name, spec in expected.components.items():
        assert (current / name / "VERSION").read_text() == f"{spec.version}\n"
    assert sorted(p.name for p in current.iterdir()) == sorted(
        [".release.json", *expected.versions()]
    )
    assert list((agent.root / "staging").iterdir()) == []
    intervals = sorted((e.started_at, e.finished_at) for e in log)
    assert len(intervals) == len(applied)
    for (_, end), (start, _) in itertools.pairwise(intervals):
        assert end <= start, "two applies overlapped"


def test_the_agent_process_stays_lean(agent: AgentProcess, refs: dict[str, ArtifactRef]) -> None:
    assert agent.proc is not None
    with agent.client() as client:
        for i in range(5):
            client.apply(make_manifest(refs, V2 if i % 2 else V1, revision=i + 1, salt=str(i)))
    status = Path(f"/proc/{agent.proc.pid}/status").read_text()
    rss_kb = int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])
    assert rss_kb < 80 * 1024, f"agent RSS {rss_kb / 1024:.1f} MB"
    cmdline = Path(f"/proc/{agent.proc.pid}/cmdline").read_bytes().split(b"\0")
    assert cmdline[1:3] == [b"-m", b"fleet.agent"]


@pytest.mark.parametrize(
    ("extra", "token", "message"),
    [
        ([], None, "Cannot read token file"),
        ([], "  \n", "is empty"),
        (["--keep", "0"], "tok", "--keep must be at least 1, got 0"),
        (["--port", "70000"], "tok", "--port must be 0-65535, got 70000"),
        (["--fault-error-rate", "2"], "tok", "error_rate"),
    ],
)
def test_serve_refuses_bad_options_with_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    token: str | None,
    message: str,
) -> None:
    token_file = tmp_path / "token"
    if token is not None:
        token_file.write_text(token)
    argv = ["agent", "serve", "--root", str(tmp_path / "r"), "--port", "0"]
    argv += ["--token-file", str(token_file), *extra]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_an_idle_agent_wakes_once_a_second_and_keeps_its_date_header_fresh(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = uvicorn.Config(create_app(AgentState(Installation(tmp_path), "t")))
    config.load()
    server = QuietServer(config)
    server.server_state = uvicorn.server.ServerState()
    waited: list[float] = []
    clock = iter(range(1_000_000_000, 1_000_000_100))
    monkeypatch.setattr(uvicorn.server.time, "time", lambda: float(next(clock)))

    async def wait_for(awaitable: Any, timeout: float) -> None:
        awaitable.close()  # nothing wakes it early here: every wait times out
        waited.append(timeout)
        if len(waited) == 3:
            server.should_exit = True
        raise TimeoutError

    dates = []
    real_on_tick = server.on_tick

    async def on_tick(counter: int) -> bool:
        done = await real_on_tick(counter)
        dates.append(dict(server.server_state.default_headers)[b"date"])
        return done

    monkeypatch.setattr(server, "on_tick", on_tick)
    monkeypatch.setattr(asyncio, "wait_for", wait_for)
    asyncio.run(server.main_loop())
    assert waited == [1.0, 1.0, 1.0]
    assert len(dates) == 4 and len(set(dates)) == 4  # a fresh Date at every wake-up


def test_an_agent_stops_within_a_few_seconds_of_sigterm(agent: AgentProcess) -> None:
    assert agent.proc is not None
    started = time.monotonic()
    agent.proc.terminate()
    agent.proc.wait(10)
    assert time.monotonic() - started < 1  # the signal wakes the idle loop at once
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert agent.proc.returncode == -15
    assert "Traceback" not in agent.stderr()
