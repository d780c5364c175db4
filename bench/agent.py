"""Benchmark of the Fleet agent.

1. One agent, `--applies` applies (default 50) of a 5-component manifest with
   1 MB artifacts served over HTTP, each apply a new release; then idempotent
   re-applies of the current manifest.
2. `--agents` agents (default 100) on this machine, each applying once, with
   `--concurrency` (default 16) applies in flight.

Reports applies per second, latencies and agent memory (RSS). Run from the
repository root:

    .venv/bin/python bench/agent.py
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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


class Agent:
    def __init__(self, workdir: Path) -> None:
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
                with AgentClient(self.url, TOKEN, timeout=5) as client:
                    try:
                        client.state()
                        return
                    except Exception:
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
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def manifest(refs: dict[str, ArtifactRef], base: str, version: str, n: int) -> Manifest:
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
            "instance": f"customer-{n % 1000}",
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
        for agent in fleet:
            agent.stop()
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
        help="artifacts from a local HTTP server (python -m http.server) or file:// URLs",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmpdir:
        tmp = Path(tmpdir)
        store = tmp / "store"
        refs = {
            f"{name}=={version}": build_demo_artifact(store, name, version, size=args.size)
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
        base = f"http://127.0.0.1:{port}" if args.source == "http" else ""
        try:
            cpu0 = _cpu_seconds(server.pid)
            single = bench_one_agent(tmp, refs, base, args.applies)
            cpu1 = _cpu_seconds(server.pid)
            many = bench_many_agents(tmp, refs, base, args.agents, args.concurrency)
            if args.source == "http":
                single["artifact_server_cpu_s"] = cpu1 - cpu0
                many["artifact_server_cpu_s"] = _cpu_seconds(server.pid) - cpu1
        finally:
            server.terminate()
            server.wait(10)
    report: dict[str, object] = {"cpus": os.cpu_count(), "artifact_bytes": args.size}
    report["source"] = args.source
    report["one_agent"] = single
    report["many_agents"] = many
    print(json.dumps(_rounded(report), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
