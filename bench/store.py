"""Benchmark: Fleet's database as the system of record, at 10,000 instances.

One run, on a fresh empty database:

1. apply a 10,000-instance fleet file (JSON text: parse, validate, diff, write,
   one audit event per object);
2. plan the fleet from the database and store every manifest that changes
   something (a revision per instance, one audit event each);
3. append 10,000 audit events (one transaction), then verify the whole chain.

Goals (2-core machine): apply + plan + store under 10 s on SQLite and on
PostgreSQL; verify under 2 s.

And the audit report (`--part report`): the example fleet, one instance
(vandelay-prod) with a revision approved twice (verified and self-declared)
and deployed, then 10,000 audit events about that instance; `fleet audit
report` for it, which reads and verifies the chain up to them. Goal: under
0.5 s.

    .venv/bin/python bench/store.py --backend both              # 3 runs each
    .venv/bin/python bench/store.py --backend both --write-docs # and record them
    .venv/bin/python bench/store.py --part report --write-docs  # only the report

Each run is a fresh process and a fresh database (a temporary SQLite file; a
temporary PostgreSQL database on 127.0.0.1:5432, dropped afterwards).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._docs import write_section  # noqa: E402

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)
COMPONENTS = ("api", "web", "worker", "migrations", "search", "billing", "auth", "reports")
REQUIRES = {"web": "api", "worker": "api", "billing": "auth", "reports": "search"}
GOAL_WRITE = 10.0
GOAL_VERIFY = 2.0
GOAL_REPORT = 0.5
REPORT_EVENTS = 10_000
PG = "postgresql+psycopg://postgres@127.0.0.1:5432"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def fleet_data(instances: int, seed: int = 11) -> dict[str, Any]:
    """A fleet shaped like a real one: release trains per channel, some drift."""
    rng = random.Random(seed)
    versions = [f"{ma}.{mi}.{pa}" for ma in range(2, 5) for mi in range(4) for pa in range(5)]
    start = NOW - timedelta(days=400)
    registry = []
    for comp in COMPONENTS:
        for n, v in enumerate(versions):
            entry: dict[str, Any] = {
                "component": comp,
                "version": v,
                "released_at": _iso(start + timedelta(days=6 * n)),
                "artifact": {
                    "url": f"https://artifacts.vendor.example/{comp}/{v}/{comp}-{v}.tar.gz",
                    "sha256": f"{rng.getrandbits(256):064x}",
                },
            }
            other = REQUIRES.get(comp)
            if other:
                major, minor = v.split(".")[:2]
                entry["requires"] = {other: f">={major}.{minor},<{int(major) + 1}"}
            registry.append(entry)
    channels = [
        {
            "name": "stable",
            "policy": "auto-update",
            "constraint": "<5",
            "soak": "2d",
            "maintenance_window": {"cron": "0 2 * * *", "duration": "4h", "timezone": "UTC"},
        },
        {
            "name": "lts",
            "policy": "manual-approval",
            "constraint": "~=3.2",
            "approvals_required": 2,
        },
        {"name": "beta", "policy": "auto-update"},
        {"name": "frozen", "policy": "frozen"},
    ]
    trains = {
        name: [
            {c: versions[max(0, rng.randint(lo, hi) - rng.randint(0, 2))] for c in COMPONENTS}
            for _ in range(20)
        ]
        for name, lo, hi in (
            ("stable", 30, 55),
            ("lts", 30, 34),
            ("beta", 45, 59),
            ("frozen", 10, 40),
        )
    }
    fleet = []
    for i in range(instances):
        channel = rng.choices(["stable", "lts", "beta", "frozen"], weights=(6, 2, 1, 1))[0]
        current = dict(rng.choice(trains[channel]))
        if channel == "lts":  # LTS runs the 3.2 line
            current = {c: f"3.2.{rng.randint(0, 2)}" for c in COMPONENTS}
        fleet.append(
            {
                "name": f"customer-{i:05d}",
                "customer": f"Customer {i}",
                "channel": channel,
                "labels": {"region": rng.choice(["eu", "us", "apac"]), "tier": "gold"},
                "target": f"customer-{i:05d}",
                "current": current,
            }
        )
    pins = []
    for n in range(60):
        kind = ("global", "channel", "instance")[n % 3]
        scope = {
            "global": "global",
            "channel": f"channel:{rng.choice(['stable', 'beta'])}",
            "instance": f"instance:{rng.choice(fleet)['name']}",
        }[kind]
        pins.append(
            {
                "scope": scope,
                "component": rng.choice(COMPONENTS),
                "spec": f"!={rng.choice(versions[40:])}",
                "reason": "bench",
                "author": "ops@vendor.example",
                "created_at": _iso(NOW - timedelta(days=30)),
            }
        )
    unique_pins = list({(p["scope"], p["component"], p["spec"]): p for p in pins}.values())
    advisories = [
        {
            "id": f"FLEET-2026-{n:04d}",
            "component": rng.choice(COMPONENTS),
            "severity": rng.choice(["critical", "high", "medium", "low"]),
            "published_at": _iso(NOW - timedelta(days=rng.randint(0, 60))),
            "ranges": [
                {
                    "type": "ECOSYSTEM",
                    "events": [{"introduced": f"{ma}.{mi}.0"}, {"fixed": f"{ma}.{mi}.3"}],
                }
            ],
        }
        for n, (ma, mi) in enumerate((rng.randint(2, 4), rng.randint(0, 3)) for _ in range(30))
    ]
    return {
        "format": 1,
        "components": list(COMPONENTS),
        "versions": registry,
        "channels": channels,
        "instances": fleet,
        "pins": unique_pins,
        "advisories": advisories,
    }


def run_once(backend: str, instances: int) -> dict[str, Any]:
    import psycopg

    from fleet.core.fleetfile import parse_fleet_text
    from fleet.db.audit import Entry
    from fleet.db.engine import create_all, make_engine
    from fleet.services import audit
    from fleet.services.fleet import apply_fleet_file
    from fleet.services.manifests import compile_and_store

    text = json.dumps(fleet_data(instances))
    name = f"fleet_bench_{uuid.uuid4().hex[:10]}"
    tmp = tempfile.TemporaryDirectory()
    if backend == "sqlite":
        url = f"sqlite:///{tmp.name}/fleet.db"
    else:
        with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        url = f"{PG}/{name}"
    engine = make_engine(url)
    try:
        create_all(engine)
        t0 = time.perf_counter()
        fleet = parse_fleet_text(text)
        t1 = time.perf_counter()
        applied = apply_fleet_file(fleet, actor="bench", now=NOW, engine=engine)
        t2 = time.perf_counter()
        stored = compile_and_store(actor="bench", now=NOW, engine=engine)
        t3 = time.perf_counter()
        entries = [
            Entry("bench.event", f"instance:customer-{n:05d}", {"n": n}) for n in range(10_000)
        ]
        audit.append(entries, actor="bench", now=NOW, engine=engine)
        t4 = time.perf_counter()
        verdict = audit.verify(engine=engine)
        t5 = time.perf_counter()
        assert verdict.ok, str(verdict)
        reapply = apply_fleet_file(fleet, actor="bench", now=NOW, engine=engine)
        t6 = time.perf_counter()
        assert not reapply.changed
    finally:
        engine.dispose()
        tmp.cleanup()
        if backend == "postgres":
            with psycopg.connect(
                "host=127.0.0.1 user=postgres dbname=postgres", autocommit=True
            ) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return {
        "parse": t1 - t0,
        "apply": t2 - t1,
        "plan_store": t3 - t2,
        "write_total": t3 - t0,
        "append": t4 - t3,
        "verify": t5 - t4,
        "reapply": t6 - t5,
        "objects": len(applied.changes),
        "apply_events": applied.audit_events,
        "manifests": len(stored.new),
        "chain": verdict.checked,
    }


def _database(backend: str, tmp: str, name: str) -> str:
    import psycopg

    if backend == "sqlite":
        return f"sqlite:///{tmp}/fleet.db"
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return f"{PG}/{name}"


def _drop(backend: str, name: str) -> None:
    import psycopg

    if backend == "postgres":
        with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def report_once(backend: str, events: int = REPORT_EVENTS) -> dict[str, Any]:
    from fleet.core.approvals import Request
    from fleet.core.fleetfile import parse_fleet_text
    from fleet.db.audit import Entry
    from fleet.db.engine import create_all, make_engine
    from fleet.services import audit
    from fleet.services.approvals import open_requests
    from fleet.services.deployments import (
        finish_deployment,
        record_approval,
        start_deployment,
    )
    from fleet.services.fleet import apply_fleet_file
    from fleet.services.manifests import compile_and_store, mark_manifest
    from fleet.services.reports import audit_report

    instance, run = "vandelay-prod", "11111111-1111-4111-8111-111111111111"
    name = f"fleet_bench_{uuid.uuid4().hex[:10]}"
    tmp = tempfile.TemporaryDirectory()
    url = _database(backend, tmp.name, name)
    engine = make_engine(url)
    try:
        create_all(engine)
        text = (ROOT / "examples" / "fleet.yaml").read_text()
        apply_fleet_file(parse_fleet_text(text), actor="ops", now=NOW, engine=engine)
        stored = compile_and_store(
            actor="scheduler", now=NOW, instances=[instance], flow_run_id=run, engine=engine
        )
        number = stored.revisions[instance]
        item = next(i for i in stored.plan.instances if i.instance == instance)
        assert item.manifest is not None
        digest = item.manifest.hash
        open_requests(
            [Request(instance, number, digest, 2)],
            requested_by="scheduler",
            deadlines={instance: NOW + timedelta(days=3)},
            flow_run_id=run,
            now=NOW,
            engine=engine,
        )
        for who, verified in (("carol", True), ("dave", False)):
            record_approval(
                instance,
                approver=who,
                decision="approve",
                verified=verified,
                flow_run_id=run,
                manifest_number=number,
                manifest_hash=digest,
                now=NOW,
                engine=engine,
            )
        start_deployment(instance, number, flow_run_id=run, actor="s", now=NOW, engine=engine)
        mark_manifest(
            instance, number, "deployed", actor="s", now=NOW, flow_run_id=run, engine=engine
        )
        finish_deployment(
            instance, flow_run_id=run, outcome="succeeded", actor="s", now=NOW, engine=engine
        )
        later = NOW + timedelta(hours=1)
        audit.append(
            [
                Entry("instance.checked", f"instance:{instance}", {"revision": number, "n": n})
                for n in range(events)
            ],
            actor="drift-check",
            now=later,
            engine=engine,
        )
        timings = []
        for _ in range(5):
            t0 = time.perf_counter()
            found = audit_report(instance, at=later, engine=engine)
            timings.append(time.perf_counter() - t0)
        assert found.chain is not None and found.chain.ok, str(found.chain)
        assert [a.approver for a in found.approvals] == ["carol", "dave"]
        total = audit.verify(engine=engine).checked
    finally:
        engine.dispose()
        tmp.cleanup()
        _drop(backend, name)
    return {
        "report": statistics.median(timings),
        "cited": len(found.events),
        "chain": total,
        "verified": found.chain.checked,
    }


def _report_part(backends: tuple[str, ...], runs: int, write_docs: bool) -> bool:
    rows = []
    met = True
    first: dict[str, Any] = {}
    for backend in backends:
        results = []
        for _ in range(runs):
            out = subprocess.run(
                [sys.executable, __file__, "--once-report", "--backend", backend],
                capture_output=True,
                text=True,
                check=True,
            )
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        seconds = statistics.median(r["report"] for r in results)
        ok = seconds < GOAL_REPORT
        met = met and ok
        first = results[0]
        print(
            f"{backend}: audit report of one instance with {REPORT_EVENTS:,} audit events "
            f"{seconds:.3f} s ({first['cited']:,} events cited, chain of {first['chain']:,} "
            f"verified up to {first['verified']:,}); goal {'met' if ok else 'NOT met'}"
        )
        rows.append(f"| {backend} | **{seconds:.3f}** | {'met' if ok else 'NOT met'} |")
    if write_docs:
        write_section(
            "Audit report (bench/store.py --part report)",
            [
                "`fleet audit report` for one instance of the example fleet whose revision "
                "was approved twice (verified and self-declared) and deployed, followed by "
                f"{REPORT_EVENTS:,} audit events about that instance. Seconds per report: the "
                f"median over {runs} runs (each a fresh process and a fresh database) of the "
                "median of 5 reports.",
                "",
                "| backend | report (goal < 0.5) | goal |",
                "|---|---|---|",
                *rows,
                "",
                f"Per report: {first['cited']:,} events cited, the chain ({first['chain']:,} "
                f"events) read and verified up to event {first['verified']:,}. The report "
                "verifies the whole chain up to the newest event it cites, so its cost grows "
                "with the length of that prefix (other instances' events included), not only "
                "with the instance's own events.",
                "",
                "Reproduce: `.venv/bin/python bench/store.py --backend both --part report "
                "--write-docs`.",
            ],
        )
    return met


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--once", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--once-report", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--part", choices=("all", "store", "report"), default="all")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    if args.once:
        print(json.dumps(run_once(args.backend, args.instances)))
        return 0
    if args.once_report:
        print(json.dumps(report_once(args.backend)))
        return 0
    backends = ("sqlite", "postgres") if args.backend == "both" else (args.backend,)
    report_met = True
    if args.part in ("all", "report"):
        report_met = _report_part(backends, args.runs, args.write_docs)
    if args.part == "report":
        return 0 if report_met else 1
    rows = []
    met = True
    for backend in backends:
        results = []
        for _ in range(args.runs):
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--once",
                    "--backend",
                    backend,
                    "--instances",
                    str(args.instances),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))

        def med(key: str, results: list[dict[str, Any]] = results) -> float:
            return statistics.median(r[key] for r in results)

        ok = med("write_total") < GOAL_WRITE and med("verify") < GOAL_VERIFY
        met = met and ok
        first = results[0]
        print(
            f"{backend}: apply+plan+store {med('write_total'):.2f} s (parse {med('parse'):.2f}, "
            f"apply {med('apply'):.2f}, plan+store {med('plan_store'):.2f}); "
            f"append 10k events {med('append'):.2f} s; verify {first['chain']:,} events "
            f"{med('verify'):.2f} s; re-apply (no change) {med('reapply'):.2f} s; "
            f"{first['objects']:,} objects, {first['manifests']:,} manifests stored; "
            f"goal {'met' if ok else 'NOT met'}"
        )
        rows.append(
            f"| {backend} | {med('parse'):.2f} | {med('apply'):.2f} | {med('plan_store'):.2f} "
            f"| **{med('write_total'):.2f}** | {med('append'):.2f} | **{med('verify'):.2f}** "
            f"| {med('reapply'):.2f} | {'met' if ok else 'NOT met'} |"
        )
    if args.write_docs:
        first = results[0]
        write_section(
            "Store (bench/store.py)",
            [
                f"A {args.instances:,}-instance fleet file (8 components x 60 versions, 4 "
                "channels, pins and advisories at every level) applied into an empty database, "
                "planned from the database with every changing manifest stored, then 10,000 "
                "audit events appended and the whole chain verified. Seconds, median of "
                f"{args.runs} runs, each a fresh process and a fresh database.",
                "",
                "| backend | parse file | apply | plan + store | apply + plan + store "
                "(goal < 10) | append 10k events | verify chain (goal < 2) | re-apply, no change "
                "| goals |",
                "|---|---|---|---|---|---|---|---|---|",
                *rows,
                "",
                f"Per run: {first['objects']:,} objects created, each with its audit event "
                f"({first['apply_events']:,} events with the summary), {first['manifests']:,} "
                f"manifest revisions stored, {first['chain']:,} events verified. Apply and "
                "store use bulk inserts and executemany updates; the audit events of a big "
                "apply are one per object (sealed in Python, inserted in batches of 5,000).",
                "",
                "Reproduce: `.venv/bin/python bench/store.py --backend both --write-docs` "
                "(PostgreSQL 15 on 127.0.0.1:5432, SQLite in WAL mode on the local disk).",
            ],
        )
    return 0 if met and report_met else 1


if __name__ == "__main__":
    sys.exit(main())
