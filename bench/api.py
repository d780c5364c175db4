"""Benchmark: the REST API on a 1,000-instance fleet.

16 concurrent clients for 30 s on each of three routes, one after the other:

- GET  /plans/preview?instance=X   (plan one random instance; a read)
- GET  /history/X                  (one random instance's revisions; a read)
- POST /pins                       (a new instance pin, audited; a write)

The server is `fleet api serve --workers N` on a SQLite database that holds
the fleet and one stored plan (a revision per instance it changes); it runs
with 2 worker processes (one per core) and then with 1. Every request
carries a bearer token, so each one also authenticates. Goal: p99 under
100 ms for the single-instance reads, with 16 clients.

    .venv/bin/python bench/api.py                     # print the figures
    .venv/bin/python bench/api.py --write-docs        # and record them
    .venv/bin/python bench/api.py --seconds 5 --workers 2   # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._docs import write_section  # noqa: E402
from bench.store import NOW, fleet_data  # noqa: E402
from fleet.settings import Settings  # noqa: E402

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
    """`clients` keep-alive connections, each sending its next request as soon as
    the last one is answered, for `seconds` after `warmup`."""
    return asyncio.run(_load(base, secret, request, clients, seconds, warmup))


async def _load(
    base: str, secret: str, request: Any, clients: int, seconds: float, warmup: float
) -> Result:
    # A minimal HTTP/1.1 client on one event loop: the load generator shares
    # the server's 2 cores, and httpx in 16 threads cost about 2 ms of CPU per
    # request (more than half a core at 250 req/s); this costs a tenth of that.
    host, port = base.removeprefix("http://").split(":")
    result = Result()
    loop = asyncio.get_running_loop()
    start = loop.time() + warmup
    stop = start + seconds
    counter = itertools.count()

    async def client(n: int) -> None:
        rng = random.Random(n)
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while True:
                method, path, body = request(rng, next(counter))
                t0 = loop.time()
                if t0 >= stop:
                    return
                writer.write(_request_bytes(method, path, host, secret, body))
                status = await _response_status(reader)
                elapsed = loop.time() - t0
                if t0 >= start:
                    result.add(status, elapsed)
        finally:
            writer.close()

    await asyncio.gather(*(client(n) for n in range(clients)))
    result.seconds = seconds
    return result


def _request_bytes(method: str, path: str, host: str, secret: str, body: Any) -> bytes:
    payload = b"" if body is None else json.dumps(body).encode()
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {secret}\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
    return head.encode() + b"\r\n" + payload


async def _response_status(reader: asyncio.StreamReader) -> int:
    """Read one whole response (the API always sends Content-Length); its status."""
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
        elif name.lower() == b"transfer-encoding":
            raise SystemExit(f"unexpected Transfer-Encoding: {value.strip()!r}")
    await reader.readexactly(length)
    return status


def scenarios(names: list[str]) -> dict[str, Any]:
    return {
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


def measure(args: argparse.Namespace, workers: int) -> tuple[list[Any], list[Any]]:
    """Every route with `args.clients` clients, then with one; on a fresh fleet."""
    tmp = tempfile.TemporaryDirectory()
    url = f"sqlite:///{tmp.name}/fleet.db"
    t0 = time.perf_counter()
    secret, names = prepare(url, args.instances)
    print(f"fleet of {len(names)} instances ready in {time.perf_counter() - t0:.1f} s")
    port = _free_port()
    server = serve(url, port, workers)
    base = f"http://127.0.0.1:{port}"
    rows: list[Any] = []
    single: list[Any] = []
    try:
        for name, request in scenarios(names).items():
            runs = [(args.clients, args.seconds, rows)]
            if args.single_seconds > 0:
                runs.append((1, args.single_seconds, single))
            for clients, seconds, out in runs:
                summary = load(base, secret, request, clients=clients, seconds=seconds).summary()
                out.append((name, summary))
                print(
                    f"{workers} worker(s) {name:32} {clients:>2} client(s) "
                    f"{summary['requests']:>7} requests  {summary['rps']:7.1f} req/s  "
                    f"p50 {summary['p50_ms']:6.1f} ms  p99 {summary['p99_ms']:6.1f} ms  "
                    f"statuses {summary['statuses']}"
                )
    finally:
        server.terminate()
        server.wait(10)
        tmp.cleanup()
    return rows, single


def met(rows: list[Any]) -> bool:
    return all(s["p99_ms"] < GOAL_P99_MS for n, s in rows if n.startswith("GET"))


def table(rows: list[Any]) -> list[str]:
    lines = [
        "| route | requests | req/s | p50 | p99 | statuses |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, s in rows:
        statuses = ", ".join(f"{k}: {v}" for k, v in s["statuses"].items())
        lines.append(
            f"| `{name}` | {s['requests']:,} | {s['rps']:.0f} | {s['p50_ms']:.1f} ms | "
            f"{s['p99_ms']:.1f} ms | {statuses} |"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[2, 1],
        help="uvicorn worker processes; one run per value (default: 2, one per core, then 1)",
    )
    parser.add_argument(
        "--single-seconds", type=float, default=5.0, help="one client per route (0: skip)"
    )
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    results = {workers: measure(args, workers) for workers in args.workers}
    load_after = os.getloadavg()[0]
    headline = args.workers[0]
    goal = met(results[headline][0])
    for workers, (rows, _) in results.items():
        print(
            f"{workers} worker(s): goal p99 < {GOAL_P99_MS:.0f} ms for single-instance reads: "
            f"{'met' if met(rows) else 'MISSED'}"
        )
    if args.write_docs:
        lines = [
            f"`.venv/bin/python bench/api.py --write-docs`: {args.instances:,} instances "
            f"(8 components, 60 versions each, one stored plan) on SQLite, served by "
            f"`fleet api serve --workers N` (uvicorn with httptools and uvloop, "
            f"{Settings().api_threads} worker threads per process). {args.clients} concurrent "
            "clients, each on its own keep-alive connection and sending its next request as "
            "soon as the last is answered, every request with a bearer token, for "
            f"{args.seconds:.0f} s per route after a 2 s warm-up. The load generator is one "
            "asyncio loop speaking HTTP/1.1 itself, so that it takes little of the 2 cores "
            "the server runs on (about 0.15 ms of CPU per request).",
        ]
        for workers, (rows, single) in results.items():
            lines += [
                "",
                f"**{workers} worker process{'es' if workers > 1 else ''}**"
                + (" (one per core: the recommended setting)" if workers == 2 else "")
                + f": p99 under {GOAL_P99_MS:.0f} ms for single-instance reads "
                + f"**{'met' if met(rows) else 'missed'}**.",
                "",
                *table(rows),
            ]
            if single:
                lines += ["", f"The same with one client ({args.single_seconds:.0f} s each):", ""]
                lines += table(single)
        lines += [
            "",
            f"Goal: p99 under {GOAL_P99_MS:.0f} ms for single-instance reads with "
            f"{args.clients} clients: **{'met' if goal else 'missed'}** with {headline} "
            f"worker(s). The machine's 1-minute load average was {load_before:.1f} before the "
            f"run and {load_after:.1f} after.",
            "",
            "Where a request's time goes: with one worker process the server is bound by one "
            "core (Python runs one thread at a time), and the latency under 16 clients is "
            "queueing (p50 is about clients / throughput). Per request, a single-instance read "
            "costs the token check (one indexed query), the handler's queries and FastAPI's "
            "routing and validation. A plan preview reuses the loaded fleet and its plan memo "
            "(the compile work that does not depend on the time) while the audit chain head "
            "is unchanged, so it costs one small query plus the time-dependent part of one "
            "instance's compile. `POST /pins` is a write: SQLite serialises writers, and "
            "Fleet's writers queue ahead of SQLite's lock (threads on a lock, processes on "
            "a file lock beside the database), which hands over at once where SQLite's busy "
            "handler retries with sleeps of up to 100 ms.",
        ]
        write_section("API (bench/api.py)", lines)
    return 0 if goal else 1


if __name__ == "__main__":
    sys.exit(main())
