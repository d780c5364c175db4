"""Orchestrator faults on the main job (`make run`): real processes killed at chosen
points, then the fleet must converge with no manual step.

One stack serves every case (its instances are split between them). Agents are
slowed with their fault API to hold a rollout at the point a case kills. Each
case ends with:
- a follow-up rollout converging (every instance deployed once);
- no instance lock held, no run left Running;
- the audit chain verifying;
- every agent running what Fleet records it runs.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml
from sqlalchemy import Engine

from fleet.db.engine import make_engine
from fleet.services import audit, deployments, locks
from fleet.services.drift import recorded_manifests
from tests.e2e.stack import Stack, processes_with_home
from tests.e2e.test_release_to_instances import Operator

T = TypeVar("T")

pytestmark = pytest.mark.slow

INSTANCES = ["a1", "a2", "a3", "a4", "m1"]
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
ZOMBIE_AFTER = 45  # seconds without a heartbeat (flow processes beat every 30 s)


def fleet_file(path: Path) -> Path:
    window = (datetime.now(UTC) + timedelta(hours=12)).hour
    data = {
        "format": 1,
        "components": ["api", "web"],
        "versions": [
            {"component": c, "version": "1.0.0", "released_at": "2026-01-01T00:00:00Z"}
            for c in ("api", "web")
        ],
        "channels": [
            # The rollouts the test starts deploy at once, window or not. The scheduled
            # auto-update (every 15 minutes) deploys only in the window: keep it 12 hours
            # away, so that only the cases' own runs touch their instances.
            {
                "name": "auto",
                "policy": "auto-update",
                "maintenance_window": {"cron": f"0 {window} * * *", "duration": "1h"},
            },
            {
                "name": "manual",
                "policy": "manual-approval",
                "approvals_required": 1,
                "approval_timeout": "1h",
            },
        ],
        "instances": [
            {
                "name": name,
                "customer": name.upper(),
                "channel": "manual" if name.startswith("m") else "auto",
                "current": {"api": "1.0.0", "web": "1.0.0"},
            }
            for name in INSTANCES
        ],
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class Faults(Operator):
    """The operator, plus what a fault test needs: processes, Fleet's database, agents."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(stack)
        self.engine: Engine = make_engine(f"sqlite:///{stack.home / 'fleet.db'}")

    def index(self, instance: str) -> int:
        return INSTANCES.index(instance)

    @staticmethod
    def answering(do: Callable[[], T], timeout: float = 120) -> T:
        """`do()`, again while a server the supervisor restarts does not answer yet."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return do()
            except (httpx.TransportError, httpx.HTTPStatusError) as exc:
                unavailable = isinstance(exc, httpx.TransportError) or (
                    exc.response.status_code in (502, 503)  # still starting
                )
                if not unavailable or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def run(self, run_id: str) -> dict[str, Any]:
        return self.answering(lambda: super(Faults, self).run(run_id))

    def start_deployment(self, name: str, parameters: dict[str, Any]) -> str:
        return self.answering(lambda: super(Faults, self).start_deployment(name, parameters))

    def call(self, method: str, path: str, *, as_: str = "operator", **kw: Any) -> Any:
        return self.answering(lambda: super(Faults, self).call(method, path, as_=as_, **kw))

    def agent_url(self, instance: str) -> str:
        return f"http://127.0.0.1:{self.stack.agent_port_base + self.index(instance)}"

    def agent(self, instance: str, path: str, method: str = "GET", **kw: Any) -> Any:
        token_file = self.stack.home / "demo" / "agents" / instance / "token"
        headers = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
        r = httpx.request(method, self.agent_url(instance) + path, headers=headers, **kw)
        r.raise_for_status()
        return r.json()

    def slow(self, instance: str, latency_ms: float) -> None:
        self.agent(instance, "/v1/faults", "PUT", json={"latency_ms": latency_ms})

    def applied_hash(self, instance: str) -> str | None:
        """What the agent's installation points at, read from disk (no request)."""
        link = self.stack.home / "demo" / "agents" / instance / "root" / "current"
        try:
            return Path(os.readlink(link)).name
        except OSError:
            return None

    def rollout(self, instances: list[str], **strategy: Any) -> str:
        return self.start_deployment(
            "compile-and-deploy/fleet",
            {
                "selector": {"instances": instances},
                "requested_by": "ops",
                "strategy": {"canary": "0", "batch": "100%", "halt_after": "100%", **strategy},
            },
        )

    def open_records(self, run_id: str) -> list[deployments.Deployment]:
        out = []
        for name in INSTANCES:
            out += [
                d
                for d in deployments.deployments_of(name, engine=self.engine)
                if d.flow_run_id == run_id and d.finished_at is None
            ]
        return out

    def wait(self, what: str, check: Any, timeout: float = 240) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = check()
            if found:
                return found
            time.sleep(0.3)
        raise AssertionError(f"{what}: not within {timeout} s")

    def engine_process(self, run_id: str) -> int:
        """The process running flow run `run_id` (Prefect's runner starts one per run)."""
        needle = f"PREFECT__FLOW_RUN_ID={run_id}".encode()
        for pid in processes_with_home(self.stack.home):
            try:
                env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if needle in env:
                return pid
        raise AssertionError(f"no process runs {run_id}")

    def child(self, argv_part: bytes) -> int:
        for pid in processes_with_home(self.stack.home):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if argv_part in cmdline and b"prefect.engine" not in cmdline:
                return pid
        raise AssertionError(f"no child with {argv_part!r}")

    def restarted(self, child: str, before: int) -> None:
        """Wait for the supervisor to restart `child` once more than `before` times
        (whatever the other cases of this stack killed before this one)."""
        self.stack.wait_for_output(f"{child} restarted (restart {before + 1})", timeout=60)

    def restarts(self, child: str) -> int:
        return sum(f"{child} restarted (restart" in line for line in self.stack.lines)

    def recovered(self, run_id: str) -> dict[str, Any] | None:
        """The recover run started for `run_id` once it has finished."""
        r = self.answering(
            lambda: self.prefect.post(
                "/flow_runs/filter",
                json={"flows": {"name": {"any_": ["recover"]}}, "limit": 50},
            )
        )
        r.raise_for_status()
        for run in r.json():
            if run["parameters"].get("flow_run_id") == run_id and run["state_type"] in FINAL:
                return dict(run)
        return None

    def running(self) -> list[dict[str, Any]]:
        r = self.answering(
            lambda: self.prefect.post(
                "/flow_runs/filter",
                json={"flow_runs": {"state": {"type": {"any_": ["RUNNING", "PENDING"]}}}},
            )
        )
        r.raise_for_status()
        return list(r.json())

    def running_runs(self) -> list[str]:
        return [f"{x['name']} {x['id']}" for x in self.running()]

    def leases_left(self) -> list[locks.Lease]:
        """Live leases of runs that are not running: what a dead or finished run left held.

        The stack serves its flows with their schedules, and a scheduled run may hold a
        lease of its own at any time. A lease counts when it is there before and after a
        moment its run was not running: a run that has just ended let go of it in
        between, and one that has just started was running then.
        """
        before = {(x.instance, x.run) for x in locks.held(engine=self.engine) if x.live(_now())}
        running = {x["id"] for x in self.running()}
        return [
            lease
            for lease in locks.held(engine=self.engine)
            if lease.live(_now())
            and (lease.instance, lease.run) in before
            and lease.run not in running
        ]

    def converged(self, instances: list[str]) -> None:
        """The end state every case must reach."""
        for name in instances:
            self.slow(name, 0)
        follow_up = self.rollout(instances, lock_timeout_seconds=180)
        run = self.wait_state(follow_up, FINAL, timeout=300)
        assert run["state_type"] == "COMPLETED", run
        for recorded in recorded_manifests(instances, engine=self.engine):
            assert recorded.hash is not None, recorded
            assert self.applied_hash(recorded.instance) == recorded.hash, recorded
            assert recorded.versions["api"] == "1.1.0", recorded
        for name in instances:
            outcomes = [d.outcome for d in deployments.deployments_of(name, engine=self.engine)]
            assert outcomes.count("succeeded") <= 1, (name, outcomes)  # deployed at most once
            assert "running" not in outcomes, (name, outcomes)
        assert self.leases_left() == []
        assert audit.verify(engine=self.engine).ok
        self.wait("no run left Running", lambda: not self.running_runs(), timeout=60)
        assert self.leases_left() == []  # nor by a run that was still ending then


def _now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Faults]:
    home = tmp_path_factory.mktemp("faults") / "home"
    path = fleet_file(home.parent / "fleet.yaml")
    stack = Stack(
        home, path, agents=len(INSTANCES), env={"FLEET_ZOMBIE_AFTER_SECONDS": str(ZOMBIE_AFTER)}
    )
    stack.start()
    operator = Faults(stack)
    try:
        operator.publish("api", "1.1.0")
        yield operator
    finally:
        operator.close()
        operator.engine.dispose()
        stack.stop()
        stack.kill_leftovers()


@pytest.fixture(autouse=True)
def unslowed(ops: Faults) -> Iterator[None]:
    """Every agent answers at full speed again after each case, failed or not: a slow
    agent left behind would hold the next case's runs (and the scheduled ones) up."""
    yield
    for name in INSTANCES:
        ops.slow(name, 0)


def test_flow_process_killed_mid_wave_and_between_apply_and_record(ops: Faults) -> None:
    """`fleet serve` and its flow-run process SIGKILLed while a wave holds its locks:
    a1's deploy has started (its apply held up), a3's apply has happened and its
    record has not (its health check is held up).

    Every request to a3 waits 8 s: its apply lands about 8 s in and its health check
    answers 8 s later, time enough to see the apply and kill before the record even
    on a loaded machine. a1's apply, 30 s in, comes well after the kill."""
    ops.slow("a1", 30_000)
    ops.slow("a3", 8_000)
    run_id = ops.rollout(["a1", "a3"])
    before = ops.applied_hash("a3")
    ops.wait("a3 applied", lambda: ops.applied_hash("a3") not in (None, before), timeout=120)
    assert len(ops.open_records(run_id)) == 2  # both deploys started, neither recorded
    held = {lease.instance for lease in locks.held(engine=ops.engine) if lease.run == run_id}
    assert held == {"a1", "a3"}
    # The runner first: killed second, it could see its child die and report the
    # crash itself, and the heartbeat watch would go untested.
    engine = ops.engine_process(run_id)
    before = ops.restarts("fleet-serve")
    os.kill(ops.child(b"fleet.cli.main\0serve"), signal.SIGKILL)
    os.kill(engine, signal.SIGKILL)
    ops.restarted("fleet-serve", before)

    crashed = ops.wait_state(run_id, {"CRASHED"}, timeout=ZOMBIE_AFTER + 120)
    assert "heartbeat" in (crashed["state"]["message"] or "")
    done = ops.wait("the recover run", lambda: ops.recovered(run_id), timeout=240)
    assert done["state_type"] == "COMPLETED", done
    assert ops.open_records(run_id) == []
    outcomes = {
        d.instance: d.outcome
        for name in ("a1", "a3")
        for d in deployments.deployments_of(name, engine=ops.engine)
        if d.flow_run_id == run_id
    }
    assert outcomes == {"a1": "interrupted", "a3": "interrupted"}
    # a3 ran the new revision when the run died: Fleet now records it so.
    (a3,) = recorded_manifests(["a3"], engine=ops.engine)
    assert a3.hash == ops.applied_hash("a3") and a3.versions["api"] == "1.1.0"
    ops.converged(["a1", "a3"])


def test_prefect_server_killed_mid_rollout_and_restarted(ops: Faults) -> None:
    ops.slow("a4", 8_000)
    run_id = ops.rollout(["a4"])
    ops.wait("a4's deploy started", lambda: ops.open_records(run_id), timeout=120)
    before = ops.restarts("prefect-server")
    os.kill(ops.child(b"prefect\0server\0start"), signal.SIGKILL)
    ops.restarted("prefect-server", before)
    ops.wait_state(run_id, FINAL, timeout=ZOMBIE_AFTER + 240)
    ops.wait(
        "a4's record closed",
        lambda: not ops.open_records(run_id) or ops.recovered(run_id),
        timeout=240,
    )
    ops.converged(["a4"])


def test_killed_during_the_suspend_for_approval(ops: Faults) -> None:
    run_id = ops.rollout(["m1"])
    ops.wait_state(run_id, {"PAUSED"}, timeout=240)
    before = ops.restarts("fleet-serve")
    os.kill(ops.child(b"fleet.cli.main\0serve"), signal.SIGKILL)
    ops.restarted("fleet-serve", before)
    ops.call("POST", f"/approvals/{run_id}", as_="approver", json={"decision": "approve"})
    run = ops.wait_state(run_id, FINAL, timeout=300)
    assert run["state_type"] == "COMPLETED", run
    (m1,) = recorded_manifests(["m1"], engine=ops.engine)
    assert m1.versions["api"] == "1.1.0" and ops.applied_hash("m1") == m1.hash
    # Nothing to do for the follow-up: m1 needs approval again only for a new plan.
    assert ops.leases_left() == [] and audit.verify(engine=ops.engine).ok
    # As in `converged`: a scheduled run may have started just now.
    ops.wait("no run left Running", lambda: not ops.running_runs(), timeout=60)
    assert ops.leases_left() == []
