"""Benchmark: the REST API on a 1,000-instance fleet.

16 concurrent clients for 30 s on each of three routes, one after the other:

- GET  /plans/preview?instance=X   (plan one random instance; a read)
- GET  /history/X                  (one random instance's revisions; a read)
- POST /pins                       (a new instance pin, audited; a write)

The server is `fleet api serve` (one uvicorn process) on a SQLite database
that holds the fleet and one stored plan (a revision per instance it
changes). Every request carries a bearer token, so each one also
authenticates. Goal: p99 under 100 ms for the single-instance reads.

    .venv/bin/python bench/api.py                     # print the figures
    .venv/bin/python bench/api.py --write-docs        # and record them
    .venv/bin/python bench/api.py --seconds 5         # a quick look
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._docs import write_section  # noqa: E402
from bench.store import NOW, fleet_data  # noqa: E402

GOAL_P99_MS = 100.0


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, status: int, elapsed: float) -> None:
        self.latencies.append(elapsed)
        self.statuses[status] = self.statuses.get(status, 0) + 1

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return {
            "requests": len(ordered),
            "rps": len(ordered) / self.seconds,
            "p50_ms": statistics.median(ordered) * 1000,
            "p99_ms": p99 * 1000,
            "statuses": dict(sorted(self.statuses.items())),
        }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare(url: str, instances: int) -> tuple[str, list[str]]:
    """The fleet, one stored plan and an operator token; returns the token and instance names."""
    from fleet.core.fleetfile import parse_fleet_text
    from fleet.db.engine import make_engine
    from fleet.db.migrate import upgrade
    from fleet.services import tokens
    from fleet.services.fleet import apply_fleet_file
    from fleet.services.manifests import compile_and_store

    upgrade(url)
    engine = make_engine(url)
    fleet = parse_fleet_text(json.dumps(fleet_data(instances)))
    apply_fleet_file(fleet, actor="bench", now=NOW, engine=engine)
    compile_and_store(actor="bench", now=NOW, engine=engine)
    _, secret = tokens.create_token("bench", "operator", actor="bench", engine=engine)
    engine.dispose()
    return secret, [i.name for i in fleet.instances]


def serve(url: str, port: int, workers: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "FLEET_DATABASE_URL": url}
    command = ["api", "serve", "--port", str(port), "--workers", str(workers)]
    server = subprocess.Popen(
        [sys.executable, "-m", "fleet.cli.main", *command],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("the API did not start")


def load(
    base: str,
    secret: str,
    request: Any,
    *,
    clients: int,
    seconds: float,
    warmup: float = 2.0,
) -> Result:
    """`clients` threads, each with its own keep-alive connection, for `seconds`."""
    result = Result()
    lock = threading.Lock()
    start = time.monotonic() + warmup
    stop = start + seconds
    counter = itertools.count()

    def client(n: int) -> None:
        rng = random.Random(n)
        headers = {"Authorization": f"Bearer {secret}"}
        with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
            while True:
                method, path, body = request(rng, next(counter))
                t0 = time.monotonic()
                if t0 >= stop:
                    return
                response = http.request(method, path, json=body)
                elapsed = time.monotonic() - t0
                if t0 >= start:
                    with lock:
                        result.add(response.status_code, elapsed)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = seconds
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument(
        "--single-seconds", type=float, default=5.0, help="one client per route (0: skip)"
    )
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()

    tmp = tempfile.TemporaryDirectory()
    url = f"sqlite:///{tmp.name}/fleet.db"
    t0 = time.perf_counter()
    secret, names = prepare(url, args.instances)
    print(f"fleet of {len(names)} instances ready in {time.perf_counter() - t0:.1f} s")
    load_before = os.getloadavg()[0]
    port = _free_port()
    server = serve(url, port, args.workers)
    base = f"http://127.0.0.1:{port}"
    scenarios = {
        "GET /plans/preview?instance=X": lambda rng, n: (
            "GET",
            f"/plans/preview?instance={rng.choice(names)}",
            None,
        ),
        "GET /history/X": lambda rng, n: ("GET", f"/history/{rng.choice(names)}", None),
        "POST /pins": lambda rng, n: (
            "POST",
            "/pins",
            {
                "scope": f"instance:{rng.choice(names)}",
                "component": "api",
                "spec": f"!=9.{n}.0",
                "reason": "benchmark pin",
            },
        ),
    }
    rows = []
    single = []
    try:
        for name, request in scenarios.items():
            runs = [(args.clients, args.seconds, rows)]
            if args.single_seconds > 0:
                runs.append((1, args.single_seconds, single))
            for clients, seconds, out in runs:
                summary = load(base, secret, request, clients=clients, seconds=seconds).summary()
                out.append((name, summary))
                print(
                    f"{name:32} {clients:>2} client(s) {summary['requests']:>7} requests  "
                    f"{summary['rps']:7.1f} req/s  p50 {summary['p50_ms']:6.1f} ms  "
                    f"p99 {summary['p99_ms']:6.1f} ms  statuses {summary['statuses']}"
                )
    finally:
        server.terminate()
        server.wait(10)
        tmp.cleanup()
    load_after = os.getloadavg()[0]
    reads = [s for n, s in rows if n.startswith("GET")]
    met = all(s["p99_ms"] < GOAL_P99_MS for s in reads)
    print(
        f"goal p99 < {GOAL_P99_MS:.0f} ms for single-instance reads: {'met' if met else 'MISSED'}"
    )
    if args.write_docs:
        lines = [
            f"`.venv/bin/python bench/api.py --write-docs`: {args.instances:,} instances "
            f"(8 components, 60 versions each, one stored plan), `fleet api serve` (one uvicorn "
            f"process) on SQLite, {args.clients} concurrent clients (keep-alive, each request "
            f"with a bearer token) for {args.seconds:.0f} s per route after a 2 s warm-up.",
            "",
            "| route | requests | req/s | p50 | p99 | statuses |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for name, s in rows:
            statuses = ", ".join(f"{k}: {v}" for k, v in s["statuses"].items())
            lines.append(
                f"| `{name}` | {s['requests']:,} | {s['rps']:.0f} | {s['p50_ms']:.1f} ms | "
                f"{s['p99_ms']:.1f} ms | {statuses} |"
            )
        if single:
            lines += [
                "",
                f"The same routes with one client ({args.single_seconds:.0f} s each): what one "
                "request costs when nothing queues.",
                "",
                "| route | req/s | p50 | p99 |",
                "|---|---:|---:|---:|",
            ]
            for name, s in single:
                lines.append(
                    f"| `{name}` | {s['rps']:.0f} | {s['p50_ms']:.1f} ms | {s['p99_ms']:.1f} ms |"
                )
        lines += [
            "",
            f"Goal: p99 under {GOAL_P99_MS:.0f} ms for single-instance reads: "
            f"**{'met' if met else 'missed'}**. The clients run on the same 2 cores as the "
            f"server; the machine's 1-minute load average was {load_before:.1f} before the run "
            f"and {load_after:.1f} after (other work shared the machine when it is above 2).",
            "",
            "Why: with 16 clients and one server process the latency is mostly queueing "
            "(p50 is about clients / throughput). A one-instance preview reuses the loaded "
            "fleet while the audit chain head is unchanged and costs the compile of that "
            "instance, the token check and HTTP; before that cache it read the whole fleet "
            "per request (about 10 req/s). `POST /pins` is bound by the pin service, which "
            "reads the whole fleet inside the write lock to check names, and by SQLite, "
            "which serialises writers (16 writers queue on one lock: hence the tail).",
        ]
        write_section("API (bench/api.py)", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
