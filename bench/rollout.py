"""Benchmark: the compile-and-deploy flow against a plain loop doing the same target calls.

200 auto-update instances, each with its own agent process on loopback, 5
components with 1 MB artifacts. Every agent first applies 1.0.0 (untimed:
the instances run what the fleet file says, and each agent process has
served an apply before either figure). Then, for each of `--rounds` rounds
(default 3), the flow rolls the next release out (plan and store,
per-instance locks, apply, health, records, artifacts) with 16 deploys in
flight, and a plain loop makes the same 200 calls (apply + health) for the
release after it with 16 threads. Goal: the flow costs at most 1.5x the
plain loop (the median round's ratio), and the Prefect server has recorded
every task run of every round. The CPU each party used is read from /proc,
to show where the 2 cores went.

    .venv/bin/python bench/rollout.py [--instances 200] [--rounds 3] [--write-docs]

It starts its own Prefect server (`prefect server start`, on a fresh
database of the local PostgreSQL, or SQLite with --prefect-db sqlite) and
its own Fleet database. FLEET_BENCH_TIMELINE=1 prints each round's task runs
on a time line.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.agent import TOKEN, Agent, stop_all  # noqa: E402
from fleet.artifacts import ArtifactRef  # noqa: E402

COMPONENTS = ("api", "web", "worker", "migrations", "scheduler")
VERSIONS = ("1.0.0", "1.1.0", "1.2.0")


def _processes() -> dict[int, tuple[int, str, float]]:
    """Every process: pid -> (parent pid, command name, CPU seconds so far)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        out[int(entry.name)] = (int(fields[1]), name, (int(fields[11]) + int(fields[12])) / tick)
    return out


def cpu_by_party(server_pid: int, agent_pids: set[int]) -> dict[str, float]:
    """CPU seconds used so far by this process, the Prefect server (with its
    children), the agents, PostgreSQL and everything else."""
    procs = _processes()
    children: dict[int, list[int]] = {}
    for pid, (parent, _, _) in procs.items():
        children.setdefault(parent, []).append(pid)

    def tree(root: int) -> set[int]:
        found, todo = set(), [root]
        while todo:
            pid = todo.pop()
            found.add(pid)
            todo += children.get(pid, [])
        return found & procs.keys()

    server = tree(server_pid)
    parties = {"flow or loop (this process)": {os.getpid()}, "Prefect server": server}
    parties["agents"] = set().union(*(tree(p) for p in agent_pids)) if agent_pids else set()
    parties["PostgreSQL"] = {p for p, (_, name, _) in procs.items() if name == "postgres"}
    out = {party: sum(procs[p][2] for p in pids) for party, pids in parties.items()}
    out["total"] = sum(cpu for _, _, cpu in procs.values())
    return out


def cpu_between(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {party: after[party] - before[party] for party in before}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_DB = "fleet_bench_prefect"


def fresh_postgres_database() -> str:
    """A new, empty database for the Prefect server on the local PostgreSQL."""
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {PG_DB}")
    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{PG_DB}"


def start_prefect(
    home: Path, database: str = "sqlite", *, log: Path | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """A Prefect server of its own (its output to `log`, else discarded)."""
    port = free_port()
    from deployments.prefect_server import server_env

    # The UI it serves asks this server's API, not the default address.
    env = {
        **server_env(),
        "PREFECT_HOME": str(home),
        "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api",
    }
    if database == "postgres":
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = fresh_postgres_database()
    argv = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
    out = log.open("wb") if log is not None else subprocess.DEVNULL
    try:
        proc = subprocess.Popen([*argv, "--port", str(port)], env=env, stdout=out, stderr=out)
    finally:
        if log is not None:
            out.close()  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("Prefect server did not start")


def manifests_for(
    names: list[str], refs: dict[tuple[str, str], Any], version: str, revision: int
) -> list[Any]:
    from fleet.agent.models import Manifest

    return [
        Manifest.model_validate(
            {
                "instance": name,
                "revision": revision,
                "manifest_hash": f"{revision:08x}{i:056x}",
                "components": {
                    c: {
                        "version": version,
                        "url": refs[(c, version)].url,
                        "sha256": refs[(c, version)].sha256,
                    }
                    for c in COMPONENTS
                },
            }
        )
        for i, name in enumerate(names)
    ]


def apply_all(clients: list[Any], manifests: list[Any]) -> None:
    """Apply manifest i through client i (apply, then health), 16 at a time."""

    def one(i: int) -> None:
        clients[i].apply(manifests[i])
        clients[i].health().raise_for_health()

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(len(clients))))


class Breakdown:
    """Where each deploy task's time goes, timed inside this (the flow's) process:
    its whole run in a task-runner slot, Prefect's tag concurrency check (made
    for every tagged task run, before it starts) and Fleet's deploy body."""

    def __init__(self) -> None:
        import prefect.task_engine as engine

        import tasks.deploying as deploying

        self.times: dict[str, list[float]] = {"slot": [], "tag check": [], "deploy body": []}
        self._timed(engine, "run_task_sync", self.times["slot"])
        self._timed(deploying, "deploy", self.times["deploy body"])
        check = engine._concurrency
        checks = self.times["tag check"]

        @contextmanager
        def timed_check(*args: Any, **kwargs: Any) -> Iterator[None]:
            started = time.perf_counter()
            with check(*args, **kwargs):
                checks.append(time.perf_counter() - started)
                yield

        engine._concurrency = timed_check  # type: ignore[assignment]

    @staticmethod
    def _timed(module: Any, name: str, into: list[float]) -> None:
        call = getattr(module, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                into.append(time.perf_counter() - started)

        setattr(module, name, timed)

    def take(self) -> dict[str, float]:
        """Mean seconds per task since the last call."""
        means = {k: sum(v) / len(v) if v else 0.0 for k, v in self.times.items()}
        for times in self.times.values():
            times.clear()
        return means


def versions_for(rounds: int) -> list[str]:
    """1.0.0 (installed before timing), then per round the flow's and the loop's release."""
    return ["1.0.0", *(f"1.{n}.0" for n in range(1, 2 * rounds + 1))]


def version_entry(
    refs: dict[tuple[str, str], ArtifactRef], component: str, version: str
) -> dict[str, Any]:
    """A fleet file's entry for one released version of the bench's artifacts."""
    ref = refs[(component, version)]
    return {
        "component": component,
        "version": version,
        "released_at": "2026-01-01T00:00:00Z",
        "artifact": {"url": ref.url, "sha256": ref.sha256},
    }


def count_task_runs(run_id: Any) -> tuple[int, int, int]:
    """(task runs, deploy task runs, Completed deploy task runs) the server recorded."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    task_runs: list[Any] = []
    with get_client(sync_client=True) as client:
        while True:  # the server answers 200 at most per page
            page = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])),
                limit=200,
                offset=len(task_runs),
            )
            task_runs += page
            if len(page) < 200:
                break
    deploys = [t for t in task_runs if t.name.startswith("deploy ")]
    if os.environ.get("FLEET_BENCH_TIMELINE"):
        print_timeline(task_runs)
    completed = [t for t in deploys if t.state and t.state.is_completed()]
    return len(task_runs), len(deploys), len(completed)


def print_timeline(task_runs: list[Any]) -> None:
    start = min(t.start_time for t in task_runs if t.start_time)
    for t in sorted(task_runs, key=lambda t: t.start_time or start):
        if t.start_time is None:
            print(f"{t.name:30} never started ({t.state_name})")
            continue
        print(
            f"{t.name:30} +{(t.start_time - start).total_seconds():6.2f}s "
            f"{t.total_run_time.total_seconds():6.2f}s run"
        )


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    server, api_url = start_prefect(tmp / "prefect-home", args.prefect_db)
    os.environ["PREFECT_API_URL"] = api_url
    os.environ["FLEET_DATABASE_URL"] = f"sqlite:///{tmp / 'fleet.db'}"
    # Imported after the environment is set: settings are read at import time.
    from blocks.targets import FleetAgent, register_block_types
    from fleet.agent.client import AgentClient
    from fleet.artifacts import build_demo_artifact
    from fleet.core.fleetfile import VersionEntry, parse_fleet_data
    from fleet.db.migrate import upgrade
    from fleet.services.catalog import publish_version
    from fleet.services.fleet import apply_fleet_file
    from flows.compile_and_deploy import Selector, Strategy, compile_and_deploy

    versions = versions_for(args.rounds)
    agents: list[Agent] = []
    try:
        store = tmp / "store"
        refs = {
            (c, v): build_demo_artifact(store, c, v, size=1_000_000)
            for c in COMPONENTS
            for v in versions
        }

        t0 = time.perf_counter()
        for batch in range(0, args.instances, 4):
            started = [
                Agent(tmp / f"agent{i}") for i in range(batch, min(batch + 4, args.instances))
            ]
            agents += started
            for agent in started:
                agent.wait_ready()
        startup = time.perf_counter() - t0
        names = [f"customer-{i:03d}" for i in range(args.instances)]
        # The instances run 1.0.0 already, as the fleet file says: each agent
        # has applied once before either figure is timed.
        clients = [AgentClient(a.url, TOKEN, timeout=120) for a in agents]
        apply_all(clients, manifests_for(names, refs, "1.0.0", 1))
        register_block_types()
        for name, agent in zip(names, agents, strict=True):
            FleetAgent(base_url=agent.url, token=TOKEN, timeout=120).save(name, overwrite=True)
        data = {
            "format": 1,
            "components": list(COMPONENTS),
            "versions": [version_entry(refs, c, "1.0.0") for c in COMPONENTS],
            "channels": [{"name": "stable", "policy": "auto-update"}],
            "instances": [
                {
                    "name": name,
                    "customer": name,
                    "channel": "stable",
                    "target": name,
                    "current": {c: "1.0.0" for c in COMPONENTS},
                }
                for name in names
            ],
        }
        upgrade(os.environ["FLEET_DATABASE_URL"])  # what `fleet init` does
        apply_fleet_file(parse_fleet_data(data), actor="bench")

        # What `fleet setup` does once (work pool, block types, automations).
        from deployments.setup import setup

        setup()
        strategy = Strategy(canary="0", batch="100%", halt_after="100%")
        breakdown = Breakdown()
        agent_pids = {a.proc.pid for a in agents}
        rounds = []
        for number in range(args.rounds):
            flow_version, loop_version = versions[2 * number + 1], versions[2 * number + 2]
            for c in COMPONENTS:  # the release the flow rolls out (auto-update: the newest)
                publish_version(
                    VersionEntry.model_validate(version_entry(refs, c, flow_version)), actor="bench"
                )
            time.sleep(2)  # a quiet start: the server has written the last round's records
            cpu0 = cpu_by_party(server.pid, agent_pids)
            t0 = time.perf_counter()
            state = compile_and_deploy(
                selector=Selector(), strategy=strategy, requested_by="bench", return_state=True
            )
            flow_wall = time.perf_counter() - t0
            flow_cpu = cpu_between(cpu0, cpu_by_party(server.pid, agent_pids))
            per_task = breakdown.take()
            report = state.result()
            outcomes = report["outcomes"]
            assert isinstance(outcomes, dict)

            time.sleep(2)
            cpu0 = cpu_by_party(server.pid, agent_pids)
            t0 = time.perf_counter()
            apply_all(clients, manifests_for(names, refs, loop_version, 1000 + number))
            loop_wall = time.perf_counter() - t0
            loop_cpu = cpu_between(cpu0, cpu_by_party(server.pid, agent_pids))

            time.sleep(2)  # let the server write the last task run states
            task_runs, deploys, completed = count_task_runs(state.state_details.flow_run_id)
            rounds.append(
                {
                    "flow_s": flow_wall,
                    "loop_s": loop_wall,
                    "ratio": flow_wall / loop_wall,
                    "succeeded": sum(1 for o in outcomes.values() if o == "succeeded"),
                    "task_runs": task_runs,
                    "deploy_task_runs": deploys,
                    "deploy_task_runs_completed": completed,
                    "flow_cpu": flow_cpu,
                    "loop_cpu": loop_cpu,
                    "per_task": per_task,
                }
            )
            print(f"round {number + 1}: {rounds[-1]}", flush=True)
        for client in clients:
            client.close()
        median = sorted(rounds, key=lambda r: r["ratio"])[len(rounds) // 2]
        return {
            "instances": args.instances,
            "agent_startup_s": startup,
            "rounds": rounds,
            "median": median,
        }
    finally:
        stop_all(agents)
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument(
        "--rounds", type=int, default=3, help="flow-then-loop rounds (default 3; median taken)"
    )
    parser.add_argument(
        "--prefect-db",
        choices=("postgres", "sqlite"),
        default="postgres",
        help="the Prefect server's database (default: a fresh one on the local PostgreSQL)",
    )
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, not {args.rounds}")
    with tempfile.TemporaryDirectory(prefix="fleet-bench-rollout-") as tmp:
        result = run(args, Path(tmp))
    median, rounds = result["median"], result["rounds"]
    recorded = all(r["deploy_task_runs_completed"] == args.instances for r in rounds)
    ok = median["ratio"] <= 1.5 and recorded
    print("median round:", median)
    print("goal (flow <= 1.5x plain loop, every task run recorded):", "met" if ok else "NOT met")
    if args.write_docs:
        from bench._docs import write_section

        loop_cpu, flow_cpu = median["loop_cpu"]["total"], median["flow_cpu"]["total"]
        server_cpu = median["flow_cpu"]["Prefect server"]
        prefect_cpu = flow_cpu - median["flow_cpu"]["agents"]

        write_section(
            "Rollout (bench/rollout.py)",
            [
                f"Goal: the compile-and-deploy flow over {args.instances} auto-update instances "
                "(one agent process each, 5 components with 1 MB artifacts, 16 deploys in "
                "flight) costs at most 1.5x a plain loop making the same target calls (apply "
                "+ health) with 16 threads, and the Prefect server records every task run.",
                "",
                f"{len(rounds)} rounds on the same agents, each a flow rolling out a new "
                "release, then the plain loop applying the next one:",
                "",
                "| round | flow | plain loop | ratio | deployed | task runs recorded "
                "(deploys Completed) |",
                "|---:|---:|---:|---:|---:|---:|",
                *(
                    f"| {n} | {r['flow_s']:.1f} s | {r['loop_s']:.1f} s | "
                    f"{r['ratio']:.2f}x | {r['succeeded']} | {r['task_runs']} "
                    f"({r['deploy_task_runs_completed']}) |"
                    for n, r in enumerate(rounds, 1)
                ),
                "",
                f"- Median ratio: **{median['ratio']:.2f}x** (goal <= 1.5x): "
                f"{'met' if median['ratio'] <= 1.5 else 'NOT met'}. Every round's "
                f"{args.instances} deploy task runs recorded Completed: "
                f"{'yes' if recorded else 'NO'}.",
                "- The flow's figure is its whole run: plan and store, locks, apply, health, "
                "Fleet's records, artifacts.",
                f"- Starting {args.instances} agents took {result['agent_startup_s']:.0f} s "
                "(not timed in either figure).",
                f"- Prefect server database: {args.prefect_db}. On its default SQLite the "
                "server serialises every write, and lock requests and task-run records "
                "queue behind each other: the same rollout takes several times longer.",
                "- Reproduce: `.venv/bin/python bench/rollout.py --write-docs`.",
                "",
                "CPU seconds used in the median round (2 cores: the wall time times 2 is what "
                "there was):",
                "",
                "| | flow | plain loop |",
                "|---|---:|---:|",
                *(
                    f"| {party} | {median['flow_cpu'][party]:.1f} | "
                    f"{median['loop_cpu'][party]:.1f} |"
                    for party in median["flow_cpu"]
                    if party != "PostgreSQL"  # its backends come and go: not countable
                ),
                "",
                "Where a deploy task's time goes in the median round (means, timed inside "
                f"the flow's process): {median['per_task']['slot']:.2f} s in a task-runner "
                "slot, of which the deploy body (Fleet's records, apply, health) took "
                f"{median['per_task']['deploy body']:.2f} s and Prefect's tag concurrency "
                f"check {median['per_task']['tag check']:.2f} s. Deploys of a channel share "
                "one tag set, so Prefect's own five-second cache answers most checks.",
                "",
                "What is left is CPU. The machine's 2 cores run the agents, the Prefect "
                f"server and the flow. The plain loop used {loop_cpu:.1f} CPU seconds, "
                f"almost all the agents' applies; the flow used {flow_cpu:.1f}: the same "
                f"applies plus {1000 * prefect_cpu / args.instances:.0f} ms of orchestration "
                f"per instance ({1000 * server_cpu / args.instances:.0f} ms in the Prefect "
                "server recording task-run states, events and logs; the rest in the flow's "
                "process: Prefect's task engine and Fleet's records). The flow kept "
                f"{flow_cpu / median['flow_s']:.1f} cores busy, the loop "
                f"{loop_cpu / median['loop_s']:.1f}, so the ratio follows their CPU "
                f"({flow_cpu / loop_cpu:.2f}x). A flow within 1.5x of the loop on this "
                "machine needs Prefect's own cost per task run about halved; that cost is "
                "in Prefect's engine and server, not in Fleet's code. Agents on their own "
                "hosts, as in production, do not take the orchestrator's cores.",
                "",
                "The cost per instance at 200 to 2,000 instances, the goal that replaced "
                "this ratio, is measured by bench/scale.py (section Scale).",
            ],
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
