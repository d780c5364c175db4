"""An agent host serving many instances under one root: real agent processes on loopback."""

from __future__ import annotations

import http.client
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blocks import FleetAgent
from fleet.agent.client import AgentClient
from fleet.agent.errors import (
    InstanceNameRejected,
    InstanceNotFound,
    ManifestRejected,
    TargetBusy,
    TargetError,
)
from fleet.agent.faults import Faults
from fleet.agent.host import AgentHost, numbered_instances
from fleet.agent.models import ApplyResult
from fleet.artifacts import ArtifactRef
from fleet.cli.main import main
from fleet.core.names import NAME_PATTERN
from tests.agent.support import ROOT, TOKEN, AgentProcess, make_manifest

V1 = {"api": "1.0.0", "web": "1.0.0"}
V2 = {"api": "2.0.0", "web": "2.0.0", "worker": "2.0.0"}
INSTANCE_ROUTES = [
    ("POST", "apply"),
    ("GET", "state"),
    ("GET", "health"),
    ("POST", "rollback"),
    ("GET", "applies"),
]
SINGLE_ROUTES = [("POST", "/v1/apply"), ("GET", "/v1/state"), ("GET", "/v1/health")]
SINGLE_ROUTES += [("POST", "/v1/rollback"), ("GET", "/v1/applies")]
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def start_host(tmp: Path, *extra: str, entry: str = "fleet.agent") -> AgentProcess:
    """A many-instance agent process (the lean entry point: faster to start)."""
    return AgentProcess(tmp / "root", tmp / "work", "--multi-instance", *extra, entry=entry).start()


@pytest.fixture(scope="module")
def shared_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    """One host for the tests that only read or refuse: acme-prod and globex-eu."""
    host = start_host(
        tmp_path_factory.mktemp("host"), "--instance", "acme-prod", "--instance", "globex-eu"
    )
    yield host
    host.stop()


def raw_request(url: str, method: str, path: str, body: bytes = b"{}") -> tuple[int, str]:
    """A request whose path is sent exactly as given (httpx would resolve `..`)."""
    parsed = httpx.URL(url)
    assert parsed.host and parsed.port
    conn = http.client.HTTPConnection(parsed.host, parsed.port, timeout=10)
    try:
        headers = {**HEADERS, "Content-Type": "application/json"}
        conn.request(method, path, body=body if method != "GET" else None, headers=headers)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# -- applies on one host ---------------------------------------------------------------------


def test_two_instances_apply_in_parallel_and_keep_separate_states(
    tmp_path: Path, refs: dict[str, ArtifactRef]
) -> None:
    # 0.8 s after each unpacked component: acme's apply holds its lock for 2.4 s or more.
    host = start_host(
        tmp_path, "--instance", "acme-prod", "--instance", "globex-eu", "--apply-delay-ms", "800"
    )
    try:
        slow = make_manifest(refs, V2, instance="acme-prod")
        quick = make_manifest(refs, {"api": "1.0.0"}, instance="globex-eu")
        acme = AgentClient(host.url, TOKEN, instance="acme-prod")
        globex = AgentClient(host.url, TOKEN, instance="globex-eu")
        results: dict[str, ApplyResult] = {}
        worker = threading.Thread(target=lambda: results.update(acme=acme.apply(slow)))
        worker.start()
        staging = host.root / "instances" / "acme-prod" / "staging"
        deadline = time.monotonic() + 20
        while not any(staging.iterdir()):  # acme's apply has its lock and is building
            assert time.monotonic() < deadline, "acme's apply never started"
            time.sleep(0.01)

        # The same instance is busy, as on a single-instance agent; another one is not.
        with (
            AgentClient(host.url, TOKEN, instance="acme-prod") as again,
            pytest.raises(TargetBusy, match="409"),
        ):
            again.apply(slow)
        results["globex"] = globex.apply(quick)
        worker.join(30)
        assert results["acme"].changed and results["globex"].changed

        (acme_log,) = [e for e in acme.applies() if e.outcome == "applied"]
        (globex_log,) = globex.applies()
        # globex applied from start to end while acme's apply held acme's lock.
        assert acme_log.started_at < globex_log.started_at
        assert globex_log.finished_at < acme_log.finished_at

        assert acme.state().components == V2
        assert acme.state().instance == "acme-prod"
        assert globex.state().components == {"api": "1.0.0"}
        assert globex.state().instance == "globex-eu"
        instances = host.root / "instances"
        assert (instances / "acme-prod" / "current" / "worker" / "VERSION").read_text() == "2.0.0\n"
        assert not (instances / "globex-eu" / "current" / "worker").exists()
        assert acme.health().healthy and globex.health().healthy
        # A rollback of one instance leaves the other as it is.
        acme.apply(make_manifest(refs, V1, instance="acme-prod", revision=2))
        assert acme.rollback().manifest_hash == slow.manifest_hash
        assert globex.state().manifest_hash == quick.manifest_hash
        assert [e.op for e in globex.applies()] == ["apply"]
        acme.close()
        globex.close()
    finally:
        host.stop()


def test_a_host_keeps_its_instances_and_states_across_a_restart(
    tmp_path: Path, refs: dict[str, ArtifactRef]
) -> None:
    host = start_host(tmp_path, "--instance-count", "3", "--instance-prefix", "customer")
    with host.client() as client:
        assert client.instances() == ["customer-0001", "customer-0002", "customer-0003"]
        assert client.create_instance("late-comer") is True
        assert client.create_instance("late-comer") is False
    manifest = make_manifest(refs, V1, instance="late-comer")
    with AgentClient(host.url, TOKEN, instance="late-comer") as late:
        late.apply(manifest)
    host.stop()

    host = start_host(tmp_path)  # no instance options: those on disk are served again
    try:
        with host.client() as client:
            assert client.instances() == [
                "customer-0001",
                "customer-0002",
                "customer-0003",
                "late-comer",
            ]
        with AgentClient(host.url, TOKEN, instance="late-comer") as late:
            assert late.state().manifest_hash == manifest.manifest_hash
        with AgentClient(host.url, TOKEN, instance="customer-0002") as other:
            assert other.state().manifest_hash is None
    finally:
        host.stop()


def test_a_host_started_through_the_full_cli_hands_its_instance_options_over(
    tmp_path: Path,
) -> None:
    host = start_host(
        tmp_path,
        "--instance",
        "acme-prod",
        "--instance",
        "acme-prod",  # named twice
        "--instance",
        "shop-0002",  # and among the numbered ones
        "--instance-count",
        "2",
        "--instance-prefix",
        "shop",
        entry="fleet.cli.main",
    )
    try:
        with host.client() as client:
            assert client.instances() == ["acme-prod", "shop-0001", "shop-0002"]
        assert host.proc is not None
        cmdline = Path(f"/proc/{host.proc.pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[1:3] == [b"-m", b"fleet.agent"]
    finally:
        host.stop()


# -- names, unknown instances, the other kind of agent ---------------------------------------

BAD_NAMES = [
    ("%2E%2E", ".."),
    ("..", ".."),
    ("a%2Fb", "a/b"),
    ("acme-prod%2F..%2F..%2Fetc", "acme-prod/../../etc"),
    ("Acme-prod", "Acme-prod"),
    ("ACME", "ACME"),
    ("acme%E2%80%8B-prod", "acme\u200b-prod"),  # zero-width space
    ("acme-prod%E2%80%8D", "acme-prod\u200d"),  # zero-width joiner
    ("%EF%BD%81cme", "\uff41cme"),  # fullwidth a: NFKC would make it "acme"
    ("%ED%A0%80", "\ufffd"),  # a lone surrogate arrives as replacement characters
    ("acme%0Aprod", "acme\nprod"),
    ("acme-prod%0A", "acme-prod\n"),
    ("acme%20prod", "acme prod"),
    ("", ""),
    ("9acme", "9acme"),
    ("-acme", "-acme"),
    ("a" * 64, "a" * 64),
    ("a" * 5000, "a" * 80),
]


@pytest.mark.parametrize(("raw", "shown"), BAD_NAMES, ids=[n[0][:20] for n in BAD_NAMES])
def test_a_bad_instance_name_is_refused_with_422_on_every_route(
    shared_host: AgentProcess, raw: str, shown: str
) -> None:
    before = tree(shared_host.root)
    routes = [(m, f"/v1/instances/{raw}/{r}") for m, r in INSTANCE_ROUTES]
    routes.append(("PUT", f"/v1/instances/{raw}"))
    for method, path in routes:
        status, text = raw_request(shared_host.url, method, path)
        assert status == 422, (method, path, status, text)
        body = httpx.Response(status, content=text).json()
        assert body["error"] == "invalid_instance_name"
        assert body["detail"].startswith("Invalid instance name: ")
        assert repr(shown)[:-1] in body["detail"]  # the bad name is quoted
        assert "^[a-z][a-z0-9-]{0,62}$" in body["detail"]
    assert tree(shared_host.root) == before


def test_the_client_and_the_block_refuse_a_bad_instance_name_before_any_request() -> None:
    for name in ("..", "a/b", "Acme", "acme\u200b", "", "a" * 64):
        with pytest.raises(InstanceNameRejected, match="Invalid instance name"):
            AgentClient("http://127.0.0.1:9", TOKEN, instance=name)
        if name:
            with pytest.raises(ValueError, match="Invalid instance name"):
                FleetAgent(base_url="http://127.0.0.1:9", token=TOKEN, instance=name)


def test_an_unknown_instance_is_404_on_every_route(
    shared_host: AgentProcess, refs: dict[str, ArtifactRef]
) -> None:
    before = tree(shared_host.root)
    manifest = make_manifest(refs, V1, instance="nobody").model_dump(mode="json")
    for method, route in INSTANCE_ROUTES:
        body = manifest if route == "apply" else {}
        r = httpx.request(
            method, f"{shared_host.url}/v1/instances/nobody/{route}", headers=HEADERS, json=body
        )
        assert r.status_code == 404, (route, r.text)
        assert r.json()["error"] == "instance_not_found"
        assert "No instance 'nobody' on this agent host" in r.json()["detail"]
    with AgentClient(shared_host.url, TOKEN, instance="nobody") as client:
        with pytest.raises(InstanceNotFound, match=r"HTTP 404.*'nobody'"):
            client.apply(make_manifest(refs, V1, instance="nobody"))
        with pytest.raises(InstanceNotFound):
            client.state()
    assert tree(shared_host.root) == before  # an apply never creates an instance


def test_a_manifest_for_another_instance_is_refused(
    shared_host: AgentProcess, refs: dict[str, ArtifactRef]
) -> None:
    before = tree(shared_host.root)
    with AgentClient(shared_host.url, TOKEN, instance="acme-prod") as acme:
        with pytest.raises(ManifestRejected, match="for instance 'globex-eu', not 'acme-prod'"):
            acme.apply(make_manifest(refs, V1, instance="globex-eu"))
        assert acme.state().manifest_hash is None
    assert tree(shared_host.root) == before


def test_each_kind_of_agent_answers_the_other_kinds_routes_with_a_clear_404(
    shared_host: AgentProcess, agent: AgentProcess, refs: dict[str, ArtifactRef]
) -> None:
    for method, path in SINGLE_ROUTES:
        r = httpx.request(method, shared_host.url + path, headers=HEADERS, json={})
        assert r.status_code == 404 and r.json()["error"] == "instance_not_found"
        assert "This agent hosts many instances" in r.json()["detail"]
    for method, route in [*INSTANCE_ROUTES, ("PUT", "")]:
        path = f"/v1/instances/acme-prod/{route}".rstrip("/")
        r = httpx.request(method, agent.url + path, headers=HEADERS, json={})
        assert r.status_code == 404 and r.json()["error"] == "instance_not_found"
        assert "This agent serves one installation" in r.json()["detail"]
    # Through clients, as a misconfigured block would reach them.
    with shared_host.client() as no_instance, pytest.raises(InstanceNotFound, match="many"):
        no_instance.apply(make_manifest(refs, V1))
    with AgentClient(agent.url, TOKEN, instance="acme-prod") as named:
        with pytest.raises(InstanceNotFound, match="one installation"):
            named.state()
        with pytest.raises(InstanceNotFound):
            named.instances()
    assert not (agent.root / "instances").exists()


def test_every_host_route_needs_the_token(shared_host: AgentProcess) -> None:
    routes = [(m, f"/v1/instances/acme-prod/{r}") for m, r in INSTANCE_ROUTES]
    routes += [("GET", "/v1/instances"), ("PUT", "/v1/instances/intruder")]
    for method, path in routes:
        r = httpx.request(method, shared_host.url + path, headers={"Authorization": "Bearer x"})
        assert r.status_code == 401, path
    assert not (shared_host.root / "instances" / "intruder").exists()


def test_faults_are_host_wide(tmp_path: Path, refs: dict[str, ArtifactRef]) -> None:
    host = start_host(tmp_path, "--instance", "acme-prod", "--instance", "globex-eu")
    try:
        clients = {
            name: AgentClient(host.url, TOKEN, instance=name) for name in ("acme-prod", "globex-eu")
        }
        for name, client in clients.items():
            client.apply(make_manifest(refs, V1, instance=name))
            assert client.health().healthy
        with host.client() as admin:
            admin.set_faults(Faults(unhealthy=True))
        for client in clients.values():
            report = client.health()
            assert not report.healthy and report.detail == "injected fault: unhealthy"
            client.close()
    finally:
        host.stop()


# -- start-up options --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--instance", "Acme"], "Invalid instance name: 'Acme'"),
        (["--instance", "../etc"], "Invalid instance name: '../etc'"),
        (["--instance", "acme\u200b"], "Invalid instance name: 'acme\\u200b'"),
        (["--instance", ""], "Invalid instance name: ''"),
        (["--instance-count", "-1"], "--instance-count must be 0-100000, got -1"),
        (["--instance-count", "100001"], "--instance-count must be 0-100000, got 100001"),
        (["--instance-count", "2", "--instance-prefix", "Shop"], "Invalid instance name: 'Shop'"),
        # 59 + "-0001" is 64 characters, one too many.
        (["--instance-count", "2", "--instance-prefix", "a" * 59], "Invalid instance name"),
    ],
)
def test_serve_refuses_bad_instance_options_with_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    extra: list[str],
    message: str,
) -> None:
    def no_exec(*args: object) -> None:
        raise AssertionError(f"options accepted: the agent would start ({args!r})")

    monkeypatch.setattr("os.execv", no_exec)  # an accepted option must not replace pytest
    token_file = tmp_path / "token"
    token_file.write_text("tok")
    argv = ["agent", "serve", "--root", str(tmp_path / "r"), "--port", "0"]
    argv += ["--token-file", str(token_file), *extra]
    assert main(argv) == 2  # refused before the hand-over to the lean entry point
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def _serve_exits(root: Path, token_file: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "fleet.agent", "agent", "serve", "--root", str(root)]
    argv += ["--port", "0", "--token-file", str(token_file), *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)


def test_a_root_serves_as_the_kind_it_was_made(
    tmp_path: Path, refs: dict[str, ArtifactRef]
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("tok")
    single = tmp_path / "single"
    (single / "releases").mkdir(parents=True)
    host = tmp_path / "host"
    (host / "instances" / "acme-prod").mkdir(parents=True)

    done = _serve_exits(single, token_file, "--multi-instance")
    assert done.returncode == 2, done.stderr
    assert "holds a single installation" in done.stderr and "Traceback" not in done.stderr
    assert not (single / "instances").exists()

    done = _serve_exits(host, token_file)
    assert done.returncode == 2, done.stderr
    assert "holds a many-instance host" in done.stderr and "Traceback" not in done.stderr
    assert not (host / "releases").exists()


# -- names and directories, in process -------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "count", "expected"),
    [
        ("shop", 0, []),
        ("shop", 3, ["shop-0001", "shop-0002", "shop-0003"]),
        ("s", 10_000, None),
    ],
)
def test_numbered_instances(prefix: str, count: int, expected: list[str] | None) -> None:
    with pytest.raises(ValueError, match="Invalid instance count: -1"):
        numbered_instances(prefix, -1)
    names = numbered_instances(prefix, count)
    assert len(names) == count == len(set(names))
    if expected is not None:
        assert names == expected
    else:
        assert names[0] == "s-00001" and names[-1] == "s-10000"
        assert names == sorted(names)  # padded: the host lists them in numeric order


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.one_of(st.text(max_size=70), st.from_regex(NAME_PATTERN, fullmatch=True)))
def test_a_name_is_an_instance_directory_or_refused(name: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        host = AgentHost(Path(tmp))
        if NAME_PATTERN.fullmatch(name):
            assert host.create(name) is True
            assert host.create(name) is False
            assert [p.name for p in host.instances_dir.iterdir()] == [name]
            assert host.get(name).root == host.instances_dir / name
        else:
            with pytest.raises(InstanceNameRejected, match="Invalid instance name"):
                host.create(name)
            with pytest.raises(InstanceNameRejected):
                host.get(name)
            assert list(host.instances_dir.iterdir()) == []
        assert sorted(p.name for p in Path(tmp).iterdir()) == ["instances"]


def test_a_host_ignores_what_is_not_an_instance_under_its_root(tmp_path: Path) -> None:
    instances = tmp_path / "instances"
    (instances / "acme-prod").mkdir(parents=True)
    (instances / "Not-A-Name").mkdir()
    (instances / "stray-file").write_text("x")
    (instances / "linked").symlink_to(tmp_path)
    host = AgentHost(tmp_path)
    assert host.names() == ["acme-prod"]
    # A file where the instance's directory would go is an error, not a crash.
    with pytest.raises(TargetError, match="Cannot create instance 'stray-file'"):
        host.create("stray-file")
    assert host.names() == ["acme-prod"]
