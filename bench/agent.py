"""Benchmark of the Fleet agent.

1. One agent, `--applies` applies (default 50) of a 5-component manifest with
   1 MB artifacts served over HTTP, each apply a new release; then idempotent
   re-applies of the current manifest.
2. `--agents` agents (default 100) on this machine, each applying once, with
   `--concurrency` (default 16) applies in flight.
3. With `--host-instances 1,200,2000`, instead: one agent process serving
   that many instances (`fleet agent serve --multi-instance --instance-count
   N`) per size: start-up, idle RSS, threads, open files and CPU, then one
   apply to every instance (5 components, `--host-size` byte artifacts) with
   `--concurrency` in flight, and a second round of idempotent re-applies.

Reports applies per second, latencies and agent memory (RSS). Run from the
repository root:

    .venv/bin/python bench/agent.py
    .venv/bin/python bench/agent.py --host-instances 1,200,2000
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fleet.agent.client import AgentClient  # noqa: E402
from fleet.agent.models import Manifest  # noqa: E402
from fleet.artifacts import ArtifactRef, build_demo_artifact  # noqa: E402

# `python -m http.server`, with a listen backlog of 256 instead of 5: with 16 downloads
# starting at once, a backlog of 5 drops SYNs and each retry costs a whole second.
ARTIFACT_SERVER = """
import http.server

class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 256
    daemon_threads = True

class Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

with Server(("127.0.0.1", 0), Handler) as httpd:
    print(f"Serving HTTP on 127.0.0.1 port {httpd.server_address[1]}", flush=True)
    httpd.serve_forever()
"""
COMPONENTS = ("api", "web", "worker", "migrations", "scheduler")
TOKEN = "bench-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


class Agent:
    def __init__(self, workdir: Path, *extra: str) -> None:
        self.root = workdir / "root"
        workdir.mkdir(parents=True)
        token_file = workdir / "token"
        token_file.write_text(TOKEN)
        self.port_file = workdir / "port"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fleet.agent",  # what `fleet agent serve` runs, without the hand-over
                "agent",
                "serve",
                "--root",
                str(self.root),
                "--port",
                "0",
                "--port-file",
                str(self.port_file),
                "--token-file",
                str(token_file),
                *extra,
            ],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = ""

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited {self.proc.returncode}")
            if self.port_file.exists():
                self.url = f"http://127.0.0.1:{self.port_file.read_text()}"
                try:
                    # /v1/faults answers on either kind of agent.
                    answer = httpx.get(f"{self.url}/v1/faults", headers=HEADERS, timeout=5)
                    if answer.status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.05)
        raise RuntimeError("agent not ready")

    def rss_mb(self) -> tuple[float, float]:
        """(current RSS, peak RSS) in MB."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text().splitlines()
        kb = {
            line.split(":")[0]: int(line.split()[1])
            for line in status
            if line.startswith(("VmRSS:", "VmHWM:"))
        }
        return kb["VmRSS"] / 1024, kb["VmHWM"] / 1024

    def stop(self) -> None:
        stop_all([self])


def stop_all(agents: list[Agent]) -> None:
    """Signal every agent, then wait for each: they shut down side by side."""
    for agent in agents:
        agent.proc.send_signal(signal.SIGTERM)
    for agent in agents:
        try:
            agent.proc.wait(10)
        except subprocess.TimeoutExpired:
            agent.proc.kill()


def manifest(
    refs: dict[str, ArtifactRef], base: str, version: str, n: int, instance: str | None = None
) -> Manifest:
    components = {
        name: {
            "version": version,
            "url": f"{base}/{name}/{version}/{refs[f'{name}=={version}'].path.name}"
            if base
            else refs[f"{name}=={version}"].url,
            "sha256": refs[f"{name}=={version}"].sha256,
        }
        for name in COMPONENTS
    }
    return Manifest.model_validate(
        {
            "instance": instance or f"customer-{n % 1000}",
            "revision": n + 1,
            "manifest_hash": hashlib.sha256(f"{version}/{n}".encode()).hexdigest(),
            "components": components,
        }
    )


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def bench_one_agent(
    tmp: Path, refs: dict[str, ArtifactRef], base: str, applies: int
) -> dict[str, float]:
    agent = Agent(tmp / "single")
    try:
        agent.wait_ready()
        rss_idle, _ = agent.rss_mb()
        latencies = []
        with AgentClient(agent.url, TOKEN, timeout=120) as client:
            t0 = time.perf_counter()
            for i in range(applies):
                m = manifest(refs, base, ("1.0.0", "2.0.0")[i % 2], i)
                t = time.perf_counter()
                result = client.apply(m)
                latencies.append(time.perf_counter() - t)
                assert result.changed, result
            wall = time.perf_counter() - t0
            idem = []
            for _ in range(200):
                t = time.perf_counter()
                result = client.apply(m)
                idem.append(time.perf_counter() - t)
                assert not result.changed
        rss, peak = agent.rss_mb()
    finally:
        agent.stop()
    return {
        "applies": applies,
        "applies_per_s": applies / wall,
        "apply_p50_ms": pct(latencies, 50) * 1000,
        "apply_p95_ms": pct(latencies, 95) * 1000,
        "idempotent_p50_ms": pct(idem, 50) * 1000,
        "idempotent_p95_ms": pct(idem, 95) * 1000,
        "rss_idle_mb": rss_idle,
        "rss_after_mb": rss,
        "rss_peak_mb": peak,
    }


def bench_many_agents(
    tmp: Path, refs: dict[str, ArtifactRef], base: str, agents: int, concurrency: int
) -> dict[str, float]:
    t0 = time.perf_counter()
    fleet: list[Agent] = []
    try:
        # Started a few at a time: 100 interpreters importing at once on 2 cores thrash.
        for batch in range(0, agents, 4):
            started = [Agent(tmp / f"agent{i}") for i in range(batch, min(batch + 4, agents))]
            fleet += started
            for agent in started:
                agent.wait_ready()
        startup = time.perf_counter() - t0

        # Clients and manifests are made before the clock starts: only the applies are timed.
        clients = [AgentClient(agent.url, TOKEN, timeout=300) for agent in fleet]
        manifests = [manifest(refs, base, "1.0.0", i) for i in range(agents)]

        def apply_once(i: int) -> float:
            t = time.perf_counter()
            assert clients[i].apply(manifests[i]).changed
            return time.perf_counter() - t

        cpu0 = sum(_cpu_seconds(agent.proc.pid) for agent in fleet)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            latencies = list(pool.map(apply_once, range(agents)))
        wall = time.perf_counter() - t0
        agent_cpu = sum(_cpu_seconds(agent.proc.pid) for agent in fleet) - cpu0
        for client in clients:
            client.close()
        rss = [agent.rss_mb() for agent in fleet]
    finally:
        stop_all(fleet)
    return {
        "agents": agents,
        "concurrency": concurrency,
        "startup_s": startup,
        "applies_per_s": agents / wall,
        "wall_s": wall,
        "apply_p50_ms": pct(latencies, 50) * 1000,
        "apply_p95_ms": pct(latencies, 95) * 1000,
        "agent_cpu_per_apply_ms": agent_cpu / agents * 1000,
        "rss_mean_mb": statistics.mean(r for r, _ in rss),
        "rss_max_mb": max(r for r, _ in rss),
        "rss_peak_max_mb": max(p for _, p in rss),
        "rss_total_mb": sum(r for r, _ in rss),
    }


def _proc_status(pid: int) -> dict[str, int]:
    """Threads, VmRSS and VmHWM (kB) of process `pid`."""
    wanted = ("Threads:", "VmRSS:", "VmHWM:")
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {line.split(":")[0]: int(line.split()[1]) for line in lines if line.startswith(wanted)}


def _open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class Sampler:
    """Peak threads, open files and RSS (MB) of a process, sampled every 0.1 s in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.threads = 0
        self.files = 0
        self.rss_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                status = _proc_status(self.pid)
                self.files = max(self.files, _open_files(self.pid))
            except OSError:  # gone: what was seen stands
                return
            self.threads = max(self.threads, status["Threads"])
            self.rss_mb = max(self.rss_mb, status["VmRSS"] / 1024)
            self._stop.wait(0.1)


def bench_host(
    tmp: Path,
    refs: dict[str, ArtifactRef],
    base: str,
    instances: int,
    concurrency: int,
    burst: int,
) -> dict[str, float]:
    """One agent process serving `instances` instances: idle cost, then one apply each."""
    t0 = time.perf_counter()
    host = Agent(
        tmp / f"host{instances}",
        "--instance-count",
        str(instances),
        "--instance-prefix",
        "customer",
    )
    try:
        host.wait_ready()
        startup = time.perf_counter() - t0
        with AgentClient(host.url, TOKEN, timeout=60) as admin:
            names = admin.instances()
        assert len(names) == instances, len(names)
        # Idle: what the host costs with nothing to do, over 5 s.
        time.sleep(1)
        cpu0 = _cpu_seconds(host.proc.pid)
        time.sleep(5)
        idle_cpu_percent = (_cpu_seconds(host.proc.pid) - cpu0) / 5 * 100
        idle = _proc_status(host.proc.pid)
        idle_files = _open_files(host.proc.pid)
        report: dict[str, float] = {
            "instances": instances,
            "startup_s": startup,
            "idle_rss_mb": idle["VmRSS"] / 1024,
            "idle_threads": idle["Threads"],
            "idle_open_files": idle_files,
            "idle_cpu_percent": idle_cpu_percent,
        }
        if instances < concurrency:
            return report

        first = [manifest(refs, base, "1.0.0", i, instance=n) for i, n in enumerate(names)]
        second = [
            manifest(refs, base, "2.0.0", instances + i, instance=n) for i, n in enumerate(names)
        ]

        def apply_all(manifests: list[Manifest], in_flight: int) -> list[tuple[float, bool]]:
            def apply_once(i: int) -> tuple[float, bool]:
                # A client per apply, closed after it, as a rollout's deploy task does.
                t = time.perf_counter()
                with AgentClient(host.url, TOKEN, instance=names[i], timeout=300) as client:
                    changed = client.apply(manifests[i]).changed
                return time.perf_counter() - t, changed

            with ThreadPoolExecutor(in_flight) as pool:
                return list(pool.map(apply_once, range(instances)))

        # The burst: a new release everywhere with many more applies in flight, to show
        # the host's threads bounded by its worker pool, not by requests or instances.
        rounds = (
            ("apply", first, concurrency, True),
            ("reapply", first, concurrency, False),
            ("burst", second, burst, True),
        )
        for label, manifests, in_flight, changes in rounds:
            cpu0 = _cpu_seconds(host.proc.pid)
            t = time.perf_counter()
            with Sampler(host.proc.pid) as peak:
                outcomes = apply_all(manifests, in_flight)
            wall = time.perf_counter() - t
            cpu = _cpu_seconds(host.proc.pid) - cpu0
            assert all(changed is changes for _, changed in outcomes)
            latencies = [latency for latency, _ in outcomes]
            report.update(
                {
                    f"{label}_per_s": instances / wall,
                    f"{label}_wall_s": wall,
                    f"{label}_p50_ms": pct(latencies, 50) * 1000,
                    f"{label}_p95_ms": pct(latencies, 95) * 1000,
                    f"{label}_cpu_ms": cpu / instances * 1000,
                    f"{label}_peak_threads": peak.threads,
                    f"{label}_peak_open_files": peak.files,
                }
            )
        after = _proc_status(host.proc.pid)
        report.update(
            {
                "rss_after_mb": after["VmRSS"] / 1024,
                "rss_peak_mb": after["VmHWM"] / 1024,
                "threads_after": after["Threads"],
                "open_files_after": _open_files(host.proc.pid),
            }
        )
        # Every instance holds its own release: checked on every instance.
        for name, m in zip(names, second, strict=True):
            release = host.root / "instances" / name / "current" / ".release.json"
            held = json.loads(release.read_text())["manifest"]
            assert held["instance"] == name and held["manifest_hash"] == m.manifest_hash
        return report
    finally:
        host.stop()


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process `pid`."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rounded(value: object) -> object:
    if isinstance(value, float):
        return round(value, 2)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


@contextlib.contextmanager
def _artifacts(size: int, source: str) -> Iterator[tuple[Path, dict[str, ArtifactRef], str]]:
    """A temporary directory, demo artifacts of `size` bytes in it, and the base URL they
    are served from ("" for `file://` URLs)."""
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmpdir:
        tmp = Path(tmpdir)
        store = tmp / "store"
        refs = {
            f"{name}=={version}": build_demo_artifact(store, name, version, size=size)
            for name in COMPONENTS
            for version in ("1.0.0", "2.0.0")
        }
        server = subprocess.Popen(
            [sys.executable, "-u", "-c", ARTIFACT_SERVER],
            cwd=store,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert server.stdout is not None
        port = int(server.stdout.readline().split(" port ")[1].split()[0])
        try:
            yield tmp, refs, f"http://127.0.0.1:{port}" if source == "http" else ""
        finally:
            server.terminate()
            server.wait(10)
            server.stdout.close()


def run(args: argparse.Namespace, source: str) -> dict[str, Any]:
    """Both scenarios with artifacts from `source` ("http" or "file")."""
    with _artifacts(args.size, source) as (tmp, refs, base):
        single = bench_one_agent(tmp, refs, base, args.applies)
        many = bench_many_agents(tmp, refs, base, args.agents, args.concurrency)
    return {"source": source, "one_agent": single, "many_agents": many}


def run_host(args: argparse.Namespace, sizes: list[int]) -> dict[str, Any]:
    """The many-instance host at each size, artifacts over HTTP."""
    with _artifacts(args.host_size, args.source) as (tmp, refs, base):
        hosts = [bench_host(tmp, refs, base, n, args.concurrency, args.burst) for n in sizes]
    # Other work on this shared machine moves the throughput: say how much there was.
    return {"source": args.source, "hosts": hosts, "load_average_15min": os.getloadavg()[2]}


def write_docs(args: argparse.Namespace, reports: list[dict[str, Any]]) -> None:
    from bench._docs import write_section

    rows = []
    for r in reports:
        one, many = r["one_agent"], r["many_agents"]
        rows.append(
            f"| {r['source']} | {one['applies_per_s']:.1f} "
            f"| {one['apply_p50_ms']:.0f} / {one['apply_p95_ms']:.0f} "
            f"| **{one['idempotent_p50_ms']:.1f}** / {one['idempotent_p95_ms']:.1f} "
            f"| {one['rss_idle_mb']:.0f} / **{one['rss_after_mb']:.0f}** "
            f"| {many['applies_per_s']:.1f} "
            f"| {many['apply_p50_ms']:.0f} / {many['apply_p95_ms']:.0f} "
            f"| {many['agent_cpu_per_apply_ms']:.0f} "
            f"| **{many['rss_max_mb']:.0f}** / {many['rss_total_mb'] / 1024:.1f} GB "
            f"| {many['startup_s']:.0f} |"
        )
    worst_rss = max(
        max(r["one_agent"]["rss_peak_mb"], r["many_agents"]["rss_peak_max_mb"]) for r in reports
    )
    worst_idem = max(r["one_agent"]["idempotent_p95_ms"] for r in reports)
    met = worst_rss < 80 and worst_idem < 20
    lines = [
        f"Goal: an agent under 80 MB RSS, an idempotent re-apply answered in under 20 ms. "
        f"Scenarios: one agent, {args.applies} applies of a {len(COMPONENTS)}-component "
        f"manifest with {args.size / 2**20:g} MB artifacts (each apply a new release: "
        f"download, sha256, unpack, switch, prune), then 200 idempotent re-applies; and "
        f"{args.agents} agents on this machine applying once each, {args.concurrency} applies "
        f"in flight. Latencies are seen by the client (HTTP included); RSS is read from "
        f"/proc after the applies.",
        "",
        "| artifacts | 1 agent: applies/s | apply p50 / p95 ms | re-apply p50 / p95 ms "
        f"| RSS idle / after MB | {args.agents} agents: applies/s | apply p50 / p95 ms "
        "| agent CPU per apply ms | RSS max per agent MB / total | start-up s |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"- Goals {'met' if met else 'NOT met'}: largest agent RSS {worst_rss:.0f} MB, "
        f"slowest idempotent re-apply p95 {worst_idem:.1f} ms.",
        "- `http`: artifacts from a Python static file server on loopback (http.server with a "
        "deep listen backlog); `file`: `file://` URLs on the same disk.",
        f"- With {args.concurrency} applies in flight on 2 cores each apply waits for CPU: "
        "the per-apply latency grows, the throughput is bounded by the agents' CPU per "
        "apply (hashing, gunzip, untar, Python HTTP).",
        "- Agents are started with `python -m fleet.agent agent serve ...`, which is what "
        "`fleet agent serve` hands over to (an `exec`, so the agent does not carry the "
        "other sub-commands' imports; the hand-over costs about one second of start-up, "
        "the full CLI's imports).",
        "- Throughput moves between runs with other work on this shared machine (up to "
        "2x seen); RSS and the re-apply latency hardly move.",
        "",
        "Reproduce (machine: 2 cores): `.venv/bin/python bench/agent.py --write-docs` "
        "(both artifact sources; `--source http|file` for one, printing JSON).",
    ]
    write_section("Agent (bench/agent.py)", lines)


def write_host_docs(args: argparse.Namespace, report: dict[str, Any]) -> None:
    from bench._docs import write_section

    hosts = report["hosts"]
    rows = []
    for h in hosts:
        applied = "apply_per_s" in h
        rows.append(
            f"| {h['instances']:,} | {h['startup_s']:.1f} "
            f"| **{h['idle_rss_mb']:.0f}** | **{h['idle_threads']}** | {h['idle_open_files']} "
            f"| {h['idle_cpu_percent']:.1f} "
            + (
                f"| **{h['apply_per_s']:.1f}** | {h['apply_p50_ms']:.0f} / {h['apply_p95_ms']:.0f} "
                f"| {h['apply_cpu_ms']:.1f} | {h['reapply_per_s']:.0f} | {h['burst_per_s']:.1f} "
                f"| **{h['apply_peak_threads']}** / {h['burst_peak_threads']} "
                f"| {h['apply_peak_open_files']} / {h['burst_peak_open_files']} "
                f"| {h['rss_after_mb']:.0f} / {h['rss_peak_mb']:.0f} |"
                if applied
                else "| - | - | - | - | - | - | - | - |"
            )
        )
    small, big = hosts[0], hosts[-1]
    per_instance_kb = (
        (big["idle_rss_mb"] - small["idle_rss_mb"]) * 1024 / (big["instances"] - small["instances"])
        if big["instances"] > small["instances"]
        else 0.0
    )
    lines = [
        "One agent process serving many instances (`fleet agent serve --multi-instance "
        "--instance-count N`), each with its own installation under `instances/<name>/`. "
        f"Per size: start-up until the host answers; idle RSS, threads, open files and CPU "
        f"over 5 s; then one apply to every instance ({len(COMPONENTS)} components, "
        f"{args.host_size:,}-byte artifacts over HTTP from a static file server on "
        f"loopback, each apply a new release: download, sha256, unpack, switch) with "
        f"{args.concurrency} in flight, a client opened and closed per apply as a rollout's "
        "deploy task does; then a second round that re-applies the same manifests (no-ops), "
        f"and a burst: a new release on every instance with {args.burst} applies in flight. "
        "Threads and open files are peaks sampled every 0.1 s during each round.",
        "",
        "| instances | start-up s | idle RSS MB | idle threads | idle open files "
        "| idle CPU % | applies/s | apply p50 / p95 ms | agent CPU per apply ms "
        f"| re-applies/s | burst applies/s | peak threads: apply / burst of {args.burst} "
        f"| peak open files: apply / burst of {args.burst} | RSS after / peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"- Memory per instance: about {per_instance_kb:.1f} kB of idle RSS "
        f"({small['instances']:,} to {big['instances']:,} instances). A single-instance "
        "agent is a process of about 60 MB (section above): 2,000 of them would need about "
        "120 GB, one host serves them in the figure of the last row.",
        "- Threads do not grow with instances: requests run in the server's worker pool "
        "(40 threads at most, plus the main thread), however many instances and requests "
        "in flight; nothing runs per instance while idle (no timer, no thread, no open "
        "file). Open files follow the connections in flight, not the instances.",
        "- Each instance has its own lock file, taken only during its apply: applies to "
        "different instances run side by side, and there is no host-wide lock to wait for.",
        "- Throughput is bounded by the 2 shared cores (the host, the artifact server and "
        "this benchmark's clients share them) and moves with other work on the machine: "
        f"the load average over the last 15 minutes of this run was "
        f"{report['load_average_15min']:.1f}.",
        "",
        "Reproduce (machine: 2 cores): `.venv/bin/python bench/agent.py --host-instances "
        f"{','.join(str(h['instances']) for h in hosts)} --write-docs`.",
    ]
    write_section("Agent host with many instances (bench/agent.py --host-instances)", lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--applies", type=int, default=50)
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--size", type=int, default=1 << 20, help="payload bytes per artifact")
    parser.add_argument(
        "--source",
        choices=("http", "file"),
        default="http",
        help="artifacts from a local static HTTP server or file:// URLs",
    )
    parser.add_argument(
        "--write-docs",
        action="store_true",
        help="run with both sources and record the figures in docs/benchmarks.md",
    )
    parser.add_argument(
        "--host-instances",
        help="instead: one agent serving each of these numbers of instances, e.g. 1,200,2000",
    )
    parser.add_argument(
        "--host-size", type=int, default=4096, help="payload bytes per artifact (host scenario)"
    )
    parser.add_argument(
        "--burst", type=int, default=100, help="re-applies in flight in the host's burst round"
    )
    args = parser.parse_args()
    if args.host_instances:
        sizes = [int(n) for n in args.host_instances.split(",")]
        report = run_host(args, sizes)
        print(json.dumps(_rounded({"cpus": os.cpu_count(), **report}), indent=2))
        if args.write_docs:
            write_host_docs(args, report)
        return 0
    sources = ["http", "file"] if args.write_docs else [args.source]
    reports = [run(args, source) for source in sources]
    print(json.dumps(_rounded({"cpus": os.cpu_count(), "reports": reports}), indent=2))
    if args.write_docs:
        write_docs(args, reports)
    return 0


if __name__ == "__main__":
    sys.exit(main())
