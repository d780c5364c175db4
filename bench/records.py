"""Benchmark: the CPU of Fleet's own records of one deploy, without Prefect or a target.

Per backend (a temporary SQLite file, a temporary PostgreSQL database on
127.0.0.1:5432) and thread count, in a fresh process each: a fleet of N
instances whose new revisions are stored, then, per instance, what a deploy
writes and reads around its apply: its lock taken with its records read and
its record opened (`LockKeeper.hold(then=rollouts.begin_in)`), then its end
recorded with its lock released (`record_finished(release=True)`). With
chunks of more than one, as a deploy task records a chunk: the chunk's locks
taken and records opened in one transaction (`LockKeeper.hold_many(then=
rollouts.begin_many_in)`), their ends recorded in one (`record_ended`).
Prints the process CPU and the statements per instance. The scale-out section
of docs/benchmarks.md quotes it.

    .venv/bin/python bench/records.py [--instances 600] [--threads 1,16] [--chunks 1,50]
                                      [--backend both]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

COMPONENTS = ("api", "web", "worker")
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _version(component: str, version: str) -> dict[str, Any]:
    return {
        "component": component,
        "version": version,
        "released_at": "2026-01-01T00:00:00Z",
        "artifact": {"url": f"https://example.test/{component}-{version}", "sha256": "a" * 64},
    }


def one_run(url: str, count: int, threads: int, chunk: int = 1) -> dict[str, float]:
    from sqlalchemy import Connection, event

    from fleet.core.fleetfile import VersionEntry, parse_fleet_data
    from fleet.db.engine import dispose_engines, get_engine
    from fleet.db.migrate import upgrade
    from fleet.services import locks, rollouts
    from fleet.services.catalog import publish_version
    from fleet.services.fleet import apply_fleet_file
    from fleet.services.rollouts import DeploySpec, UnderLock

    os.environ["FLEET_DATABASE_URL"] = url
    upgrade(url)
    data = {
        "format": 1,
        "components": list(COMPONENTS),
        "versions": [_version(c, "1.0.0") for c in COMPONENTS],
        "channels": [{"name": "auto", "policy": "auto-update"}],
        "instances": [
            {"name": f"i{i:05d}", "customer": f"c{i}", "channel": "auto", "target": f"t{i}"}
            for i in range(count)
        ],
    }
    apply_fleet_file(parse_fleet_data(data), actor="bench")
    for c in COMPONENTS:
        publish_version(VersionEntry.model_validate(_version(c, "1.1.0")), actor="bench")
    specs = rollouts.prepare_rollout(actor="bench", flow_run_id="plan").specs
    statements = [0]

    def counted(*_: object) -> None:
        statements[0] += 1

    event.listen(get_engine(), "before_cursor_execute", counted)
    keeper = locks.keeper()
    run = str(uuid.uuid4())

    def deploy_chunk(chunk: list[DeploySpec]) -> None:
        def begin(session: Connection, taken: list[str]) -> dict[str, UnderLock]:
            return rollouts.begin_many_in(
                session, chunk, flow_run_id=run, actor="bench", starting=set(taken)
            )

        names = [spec.instance for spec in chunk]
        with keeper.hold_many(names, run=run, then=begin) as held:
            assert all(isinstance(h.then, UnderLock) and h.then.started for h in held.values())
            ends = [(spec, "succeeded", None) for spec in chunk]
            rollouts.record_ended(ends, flow_run_id=run, actor="bench", release=True)
            for holding in held.values():
                holding.released = True

    def deploy(spec: DeploySpec) -> None:
        def begin(session: Connection) -> UnderLock:
            return rollouts.begin_in(session, spec, flow_run_id=run, actor="bench", start=True)

        with keeper.hold(spec.instance, run=run, timeout=30, then=begin) as holding:
            assert isinstance(holding.then, UnderLock) and holding.then.started
            rollouts.record_finished(
                spec, "succeeded", flow_run_id=run, actor="bench", release=True
            )
            holding.released = True

    before, started = os.times(), time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        if chunk == 1:
            list(pool.map(deploy, specs))
        else:
            list(
                pool.map(deploy_chunk, [specs[i : i + chunk] for i in range(0, len(specs), chunk)])
            )
    after, wall = os.times(), time.perf_counter() - started
    dispose_engines()
    n = len(specs)
    return {
        "instances": n,
        "cpu_ms": 1000 * ((after.user + after.system) - (before.user + before.system)) / n,
        "wall_ms": 1000 * wall / n,
        "statements": statements[0] / n,
    }


def in_fresh_process(backend: str, count: int, threads: int, chunk: int) -> dict[str, float]:
    argv = [sys.executable, __file__, "--one", backend, "--instances", str(count)]
    argv += ["--threads", str(threads), "--chunks", str(chunk)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=600)
    parser.add_argument("--threads", default="1,16")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--chunks", default="1,50", help="instances recorded together (a deploy task's chunk)"
    )
    parser.add_argument("--one", choices=["sqlite", "postgresql"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        with tempfile.TemporaryDirectory(prefix="fleet-bench-records-") as tmp:
            if args.one == "sqlite":
                result = one_run(
                    f"sqlite:///{tmp}/fleet.db", args.instances, int(args.threads), int(args.chunks)
                )
            else:
                from sqlalchemy import create_engine, text

                name = f"fleet_bench_records_{os.getpid()}"
                admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
                with admin.connect() as conn:
                    conn.execute(text(f"CREATE DATABASE {name}"))
                try:
                    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
                    result = one_run(url, args.instances, int(args.threads), int(args.chunks))
                finally:
                    with admin.connect() as conn:
                        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    admin.dispose()
        print(json.dumps(result))
        return 0
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    for backend in backends:
        for threads in (int(t) for t in args.threads.split(",")):
            for chunk in (int(c) for c in args.chunks.split(",")):
                r = in_fresh_process(backend, args.instances, threads, chunk)
                print(
                    f"{backend:10} {threads:2} threads, chunks of {chunk:2}: "
                    f"{r['cpu_ms']:.2f} ms CPU, "
                    f"{r['wall_ms']:.2f} ms wall, {r['statements']:.1f} statements per instance "
                    f"({r['instances']:.0f} instances)"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
