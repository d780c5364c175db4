"""Benchmark: plan a synthetic fleet with the pure core.

10,000 instances, 8 components, 200 versions each (with `requires` between
some), 4 channels, 100 pins across all levels and 50 advisories, planned in
one process. Goal: under 1 s for the whole plan and under 300 MB peak memory.

    .venv/bin/python bench/plan.py              # 5 runs, prints the figures
    .venv/bin/python bench/plan.py --write-docs # and records them in docs/benchmarks.md

The fleet is generated from a fixed seed, shaped like a real one: each
channel's instances run one of a few dozen release trains (manifests that
were current at some point), a few percent have drifted on one component,
and pins and advisories hit every level. Each run is a fresh process, so
peak RSS is the whole cost of that plan, fleet included.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fleet.core.advisories import Advisory, AffectedRange, RiskAcceptance, Severity  # noqa: E402
from fleet.core.channels import Channel, MaintenanceWindow, Policy  # noqa: E402
from fleet.core.instances import Instance  # noqa: E402
from fleet.core.pins import Pin, PinScope  # noqa: E402
from fleet.core.plan import compile_plan  # noqa: E402
from fleet.core.state import FleetState  # noqa: E402
from fleet.core.versions import ComponentVersion, Registry  # noqa: E402

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)
COMPONENTS = ("api", "web", "worker", "migrations", "search", "billing", "auth", "reports")
# Which components require which (the version's own major.minor line of the target).
REQUIRES = {
    "web": "api",
    "worker": "api",
    "migrations": None,
    "billing": "auth",
    "reports": "search",
}


def version_list() -> list[Version]:
    """200 versions: 4 majors x 10 minors x 5 patches, oldest first."""
    return [Version(f"{ma}.{mi}.{pa}") for ma in range(1, 5) for mi in range(10) for pa in range(5)]


def build_state(instances: int, seed: int = 7) -> FleetState:
    rng = random.Random(seed)
    versions = version_list()
    start = NOW - timedelta(days=800)
    registry: list[ComponentVersion] = []
    for comp in COMPONENTS:
        for n, v in enumerate(versions):
            requires = {}
            other = REQUIRES.get(comp)
            if other:
                major, minor = v.release[0], v.release[1]
                requires = {other: SpecifierSet(f">={major}.{minor},<{major + 1}")}
            registry.append(
                ComponentVersion(
                    comp,
                    v,
                    start + timedelta(days=4 * n, hours=COMPONENTS.index(comp)),
                    requires=requires,
                    yanked=rng.random() < 0.02,
                    yanked_reason="regression",
                )
            )
    window = MaintenanceWindow("0 2 * * *", timedelta(hours=4), "Europe/Berlin")
    channels = {
        "stable": Channel(
            "stable", Policy.AUTO_UPDATE, SpecifierSet("<5"), False, timedelta(hours=48), window
        ),
        "lts": Channel("lts", Policy.MANUAL_APPROVAL, SpecifierSet("~=3.4"), approvals_required=2),
        "beta": Channel("beta", Policy.AUTO_UPDATE, allow_prereleases=True),
        "frozen": Channel("frozen", Policy.FROZEN),
    }
    # Release trains: manifests that were current at some point, per channel.
    trains: dict[str, list[dict[str, Version]]] = {}
    for name, lo, hi in (
        ("stable", 120, 199),
        ("lts", 140, 154),
        ("beta", 170, 199),
        ("frozen", 60, 160),
    ):
        trains[name] = []
        for _ in range(30):
            line = rng.randint(lo, hi) // 5 * 5  # one minor line, components at any patch
            trains[name].append({c: versions[line + rng.randint(0, 4)] for c in COMPONENTS})
    names = list(channels)
    fleet: list[Instance] = []
    for i in range(instances):
        channel = names[rng.choices(range(4), weights=(6, 2, 1, 1))[0]]
        current = dict(rng.choice(trains[channel]))
        if rng.random() < 0.03:  # drift on one component
            comp = rng.choice(COMPONENTS)
            current[comp] = versions[versions.index(current[comp]) - 1]
        fleet.append(
            Instance(
                f"customer-{i:05d}",
                f"Customer {i}",
                channel,
                current,
                {
                    "region": rng.choice(["eu", "us", "apac"]),
                    "tier": rng.choice(["gold", "silver"]),
                },
                Policy.FROZEN if rng.random() < 0.02 else None,
            )
        )
    pins: list[Pin] = []
    for n in range(100):
        kind = ("global", "channel", "instance")[n % 3]
        name = (
            None
            if kind == "global"
            else (rng.choice(names) if kind == "channel" else rng.choice(fleet).name)
        )
        bad = rng.choice(versions[100:])  # a release that misbehaved somewhere
        spec = {
            "global": rng.choice([f"!={bad}", "<5"]),
            "channel": rng.choice([f"!={bad}", f"<{rng.randint(4, 5)}"]),
            "instance": rng.choice([f"!={bad}", "<4", "==3.*", ">=2", "<4.5"]),
        }[kind]
        pins.append(
            Pin(
                PinScope(kind, name),
                rng.choice(COMPONENTS),
                SpecifierSet(spec),
                "bench",
                "ops@vendor.example",
                NOW - timedelta(days=30),
                NOW - timedelta(days=1) if n % 10 == 0 else None,
            )
        )
    advisories: list[Advisory] = []
    for n in range(50):
        comp = rng.choice(COMPONENTS)
        major, minor = rng.randint(2, 4), rng.randint(0, 8)
        events = [{"introduced": f"{major}.{minor}.0"}, {"fixed": f"{major}.{minor}.3"}]
        advisories.append(
            Advisory(
                f"FLEET-2026-{n:04d}",
                comp,
                rng.choice(list(Severity)),
                NOW - timedelta(days=rng.randint(0, 60)),
                (AffectedRange.parse({"type": "ECOSYSTEM", "events": events}),),
            )
        )
    acceptances = [
        RiskAcceptance(
            rng.choice(fleet).name,
            rng.choice(advisories).id,
            "ciso",
            "WAF",
            NOW + timedelta(days=10),
        )
        for _ in range(20)
    ]
    return FleetState(
        COMPONENTS, Registry(registry), channels, fleet, pins, advisories, acceptances
    )


def run_once(instances: int) -> dict[str, float]:
    """Build the fleet, plan it once, report seconds and peak RSS (this process)."""
    state = build_state(instances)
    started = time.perf_counter()
    plan = compile_plan(state, NOW)
    elapsed = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    distinct = {
        (
            inst.channel,
            tuple(sorted(inst.current.items())),
            tuple(
                id(p)
                for p in state.pins
                if p.scope.applies_to(instance=inst.name, channel=inst.channel)
            ),
        )
        for inst in state.instances
    }
    return {
        "distinct": len(distinct),
        "seconds": elapsed,
        "peak_mb": peak_mb,
        "instances": len(plan.instances),
        **{f"decision_{k}": v for k, v in plan.counts().items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--once", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    if args.once:
        print(json.dumps(run_once(args.instances)))
        return 0
    results = []
    for _ in range(args.runs):
        out = subprocess.run(
            [sys.executable, __file__, "--once", "--instances", str(args.instances)],
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(json.loads(out.stdout))
    seconds = statistics.median(r["seconds"] for r in results)
    peak = statistics.median(r["peak_mb"] for r in results)
    decisions = {k[9:]: v for k, v in results[0].items() if k.startswith("decision_") and v}
    summary = (
        f"plan of {args.instances:,} instances: median {seconds:.3f} s over {args.runs} runs "
        f"(min {min(r['seconds'] for r in results):.3f}, "
        f"max {max(r['seconds'] for r in results):.3f}); "
        f"peak RSS median {peak:.0f} MB; decisions {decisions}; "
        f"{results[0]['distinct']:,} distinct (channel, current manifest, pins) combinations"
    )
    print(summary)
    ok = seconds < 1.0 and peak < 300
    print("goal (< 1 s, < 300 MB):", "met" if ok else "NOT met")
    if args.write_docs:
        from bench._docs import write_section

        write_section(
            "Plan (bench/plan.py)",
            [
                "Goal: plan 10,000 instances (8 components x 200 versions, 4 channels, "
                "100 pins, 50 advisories) in under 1 s and 300 MB, one process.",
                "",
                f"- Measured: **{seconds:.3f} s** median wall time of `compile_plan` "
                f"({args.runs} fresh processes), peak RSS **{peak:.0f} MB** (fleet included).",
                f"- Decisions: {decisions}.",
                f"- The fleet has {results[0]['distinct']:,} distinct (channel, current "
                "manifest, applicable pins) combinations: instances that share one are "
                "resolved once. A fleet where every instance is unique costs more; see "
                "the note below.",
                f"- Goal {'met' if ok else 'NOT met'}.",
                "- Reproduce: `.venv/bin/python bench/plan.py --write-docs`.",
                "",
                "Note: the synthetic fleet is shaped like a real one: each channel's "
                "instances run one of 30 release trains and 3% drift on one component. "
                "The figure depends on that sharing; a resolution of one distinct "
                "combination costs about 1-3 ms here.",
            ],
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
