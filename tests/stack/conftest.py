"""The scale-out stack (`python -m deployments.stack up`), started once per session.

It runs on free ports, under a temporary FLEET_HOME, with databases named
after the session and a Redis server of its own (on a free port: the stack
starts one when nothing answers there), so that two test runs at once never
share anything. At the end it is stopped, every process it started is gone,
and its databases are dropped.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml

from deployments.stack import BANNER_READY, STOPPED, StackConfig, drop_databases, processes_of
from fleet.artifacts import build_demo_artifact
from tests.e2e.stack import ROOT

INSTANCES = [f"s{i}" for i in range(1, 7)]  # auto-update
MANUAL = "m1"  # manual approval, by one approver
AGENTS = [*INSTANCES, MANUAL]
# Listening ports come from below the kernel's range for outgoing connections
# (32768 and up here): a port found free there is not taken by a client meanwhile.
PORTS = range(20_000, 32_000)


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_ports(count: int, taken: set[int]) -> int:
    """The first of `count` consecutive free ports, none of them in `taken`."""
    rng = random.Random()
    for _ in range(500):
        base = rng.randrange(PORTS.start, PORTS.stop - count)
        wanted = set(range(base, base + count))
        if not wanted & taken and all(_free(p) for p in wanted):
            taken |= wanted
            return base
    raise RuntimeError(f"no {count} consecutive free ports")


FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def fleet_file(path: Path) -> Path:
    # Auto-update may run in its maintenance window: keep the window away from the tests,
    # so that only the runs the tests start touch the instances.
    window = (datetime.now(UTC) + timedelta(hours=12)).hour
    data = {
        "format": 1,
        "components": ["api", "web"],
        "versions": [
            {"component": c, "version": "1.0.0", "released_at": "2026-01-01T00:00:00Z"}
            for c in ("api", "web")
        ],
        "channels": [
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
                "channel": "manual" if name == MANUAL else "auto",
                "current": {"api": "1.0.0", "web": "1.0.0"},
            }
            for name in AGENTS
        ],
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class RunningStack:
    """The stack as a test sees it: its output, its processes, its APIs and databases."""

    def __init__(self, tmp: Path) -> None:
        self.home = tmp / "home"
        self.name = f"fleet_stack_t{uuid.uuid4().hex[:10]}"
        taken: set[int] = set()
        self.config = StackConfig(
            home=self.home.resolve(),
            fleet_file=fleet_file(tmp / "fleet.yaml"),
            name=self.name,
            prefect_port=pick_ports(1, taken),
            server_ports=(pick_ports(1, taken), pick_ports(1, taken)),
            api_port=pick_ports(1, taken),
            agent_port_base=pick_ports(len(AGENTS), taken),
            redis_port=pick_ports(1, taken),
            workers=2,
            worker_limit=2,
        )
        self.lines: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self.up_seconds = 0.0
        self.prefect = httpx.Client(base_url=f"{self.config.prefect_url}/api", timeout=30)
        self.api = httpx.Client(base_url=self.config.api_url, timeout=30)
        self.versions = 0

    # -- the process ------------------------------------------------------------------
    def argv(self) -> list[str]:
        c = self.config
        return [
            sys.executable,
            "-m",
            "deployments.stack",
            "up",
            "--file",
            str(c.fleet_file),
            "--name",
            c.name,
            "--prefect-port",
            str(c.prefect_port),
            "--server-ports",
            ",".join(map(str, c.server_ports)),
            "--api-port",
            str(c.api_port),
            "--agent-port-base",
            str(c.agent_port_base),
            "--redis-port",
            str(c.redis_port),
            "--workers",
            str(c.workers),
            "--worker-limit",
            str(c.worker_limit),
        ]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FLEET_"))}
        env["FLEET_HOME"] = str(self.home)
        env["PREFECT_WORKER_QUERY_SECONDS"] = "1"  # the tests wait for workers to take runs
        return env

    def start(self, timeout: float = 240) -> None:
        started = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv(),
            cwd=ROOT,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        while not any(line.startswith(BANNER_READY) for line in self.lines):
            if self.proc.poll() is not None:
                self._reader.join(5)
                raise AssertionError(f"the stack exited {self.proc.returncode}:\n{self.output}")
            if time.monotonic() - started > timeout:
                raise AssertionError(f"the stack was not up after {timeout} s:\n{self.output}")
            time.sleep(0.2)
        self.wait_for_output("start-up:")
        self.up_seconds = time.monotonic() - started

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_output(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines:
                if text in line:
                    return line
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} within {timeout} s in:\n{self.output}")
            time.sleep(0.2)

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(10)
        if self._reader is not None:
            self._reader.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.prefect.close()
        self.api.close()
        return code

    def leftovers(self, timeout: float = 15) -> list[int]:
        deadline = time.monotonic() + timeout
        while (left := processes_of(self.config.work)) and time.monotonic() < deadline:
            time.sleep(0.2)
        return left

    def kill_leftovers(self) -> None:
        for pid in processes_of(self.config.work):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    # -- its parts --------------------------------------------------------------------
    def children(self) -> dict[str, int]:
        state = json.loads(self.config.state_file.read_text())
        return {k: int(v) for k, v in state["children"].items()}

    def token(self, role: str) -> str:
        for line in self.lines:
            parts = line.split()
            if len(parts) == 2 and parts[0] == role:
                return parts[1]
        raise AssertionError(f"no {role} token in:\n{self.output}")

    def call(self, method: str, path: str, *, as_: str = "operator", **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token(as_)}"}
        r = self.api.request(method, path, headers=headers, **kw)
        assert r.is_success, f"{method} {path}: {r.status_code} {r.text}"
        return r.json()

    def agent(self, instance: str, path: str, method: str = "GET", **kw: Any) -> Any:
        port = self.config.agent_port_base + AGENTS.index(instance)
        token_file = self.config.work / "agents" / instance / "token"
        headers = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
        r = httpx.request(method, f"http://127.0.0.1:{port}{path}", headers=headers, **kw)
        r.raise_for_status()
        return r.json()

    def slow_agents(self, latency_ms: float) -> None:
        """Every agent request waits this long: a rollout lasts long enough to break things."""
        for name in AGENTS:
            self.agent(name, "/v1/faults", method="PUT", json={"latency_ms": latency_ms})

    def release(self, component: str = "api") -> str:
        """A new version of `component`, published through Fleet's API."""
        self.versions += 1
        version = f"1.{self.versions}.0"
        ref = build_demo_artifact(self.config.work / "artifacts", component, version, size=2_000)
        body = {"version": version, "artifact": {"url": ref.url, "sha256": ref.sha256}}
        self.call("POST", f"/components/{component}/versions", json=body)
        return version

    def rollout(self, instances: list[str]) -> str:
        body = {"selector": {"instances": instances}, "strategy": {"halt_after": "100%"}}
        return str(self.call("POST", "/rollouts", json=body)["flow_run_id"])

    def run(self, run_id: str) -> dict[str, Any]:
        r = self.prefect.get(f"/flow_runs/{run_id}")
        r.raise_for_status()
        return dict(r.json())

    def wait_state(self, run_id: str, types: set[str], timeout: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.run(run_id)
            if run["state_type"] in types:
                return run
            time.sleep(0.3)
        raise AssertionError(f"run {run_id} not in {types} after {timeout} s: {self.run(run_id)}")

    def wait_for_run(self, deployment: str, parameters: dict[str, Any], timeout: float = 60) -> str:
        """The id of the first run of `deployment` whose parameters include `parameters`."""
        found = self.prefect.get(f"/deployments/name/{deployment}")
        found.raise_for_status()
        body = {"deployments": {"id": {"any_": [found.json()["id"]]}}, "limit": 200}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.prefect.post("/flow_runs/filter", json=body)
            r.raise_for_status()
            for run in r.json():
                if parameters.items() <= run["parameters"].items():
                    return str(run["id"])
            time.sleep(0.5)
        automations = self.prefect.post("/automations/filter", json={}).json()
        runs = self.prefect.post("/flow_runs/filter", json={"limit": 50}).json()
        raise AssertionError(
            f"no run of {deployment} with {parameters} within {timeout} s; automations "
            f"{[a['name'] for a in automations]}; runs "
            f"{[(r['name'], r['state_type']) for r in runs if r['state_type'] != 'SCHEDULED']}"
            f"\n{self.output}"
        )

    def task_runs(self, run_id: str) -> list[dict[str, Any]]:
        body = {"flow_runs": {"id": {"any_": [run_id]}}, "limit": 200}
        r = self.prefect.post("/task_runs/filter", json=body)
        r.raise_for_status()
        return list(r.json())

    def deploy_task_runs(self, run_id: str) -> dict[str, str]:
        """Instance -> state of the run's deploy task runs (named `deploy <instance> r<n>`)."""
        out = {}
        for t in self.task_runs(run_id):
            if m := re.match(r"deploy (\S+) r\d+", t["name"]):
                out[m.group(1)] = t["state_type"]
        return out

    def fleet_sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        """Rows straight from Fleet's PostgreSQL database."""
        dbname = self.config.database("fleet")
        with psycopg.connect(host="127.0.0.1", port=5432, user="postgres", dbname=dbname) as conn:
            return [tuple(r) for r in conn.execute(query, params).fetchall()]

    def deployments_of(self, run_id: str) -> dict[str, str]:
        """Instance -> outcome of Fleet's deployment records for a flow run."""
        rows = self.fleet_sql(
            "SELECT instance, outcome FROM deployment WHERE flow_run_id = %s", run_id
        )
        return {str(i): str(o) for i, o in rows}

    def workers_of(self, run_id: str) -> list[str]:
        """The workers that took a flow run (once, or again after a resume), from their
        logs: a worker that tried to as well was told by the server that another had it."""
        took = []
        for i in range(self.config.workers):
            log = self.config.work / "logs" / f"worker-{i + 1}.log"
            text = log.read_text(errors="replace") if log.exists() else ""
            tries = text.count(f"submitting flow run '{run_id}'")
            if tries > text.count(f"Aborted submission of flow run '{run_id}'"):
                took.append(f"worker-{i + 1}")
        return took

    def worker_of(self, run_id: str) -> str | None:
        took = self.workers_of(run_id)
        assert len(took) <= 1, f"run {run_id} taken by {took}"
        return took[0] if took else None

    def running_instances(self, instance: str) -> dict[str, str]:
        return dict(self.agent(instance, "/v1/state")["components"])

    def live_locks(self) -> dict[str, str]:
        """Fleet's instance locks whose lease has not ended: instance -> holding run."""
        rows = self.fleet_sql("SELECT instance, run FROM instance_lock WHERE expires_at > now()")
        return {str(i): str(r) for i, r in rows}

    def redis_leases(self) -> list[dict[str, Any]]:
        """Prefect's concurrency leases stored in Redis."""
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.config.redis_port)
        try:
            keys = list(client.scan_iter("prefect:concurrency:lease:*"))
            return [json.loads(client.get(k) or b"{}") for k in keys]
        finally:
            client.close()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    s = RunningStack(tmp_path_factory.mktemp("stack"))
    try:
        s.start()
        yield s
    finally:
        code = s.stop()
        left = s.leftovers()
        s.kill_leftovers()
        with contextlib.suppress(psycopg.Error):
            drop_databases(s.config)
    assert code == 0, s.output[-5000:]
    assert STOPPED in s.output
    assert left == [], f"processes left behind: {left}"
