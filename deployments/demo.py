"""The main job: a living fleet on one machine, all data under FLEET_HOME.

    python -m deployments.demo [--file FLEET_FILE] [--prefect-port N] [--api-port N]
                               [--agent-port-base N]

It starts a Prefect server on SQLite (PREFECT_HOME under FLEET_HOME), builds
demo artifacts for a copy of the fleet file (file:// URLs), starts one agent
per instance and registers a FleetAgent block named after it, creates Fleet's
database and applies the copy, runs `fleet setup`, creates an operator and an
approver API token, starts Fleet's API (with the console at its root) and serves every flow with
its schedule (`fleet serve`). Then it prints where to look (the console's
address first) and what to try, and waits.

Once it is up, a child that dies (an agent, the API, the Prefect server, `fleet
serve`) is logged and restarted with backoff (`deployments.supervisor`); the
rest stays up. Ctrl-C (SIGINT) or SIGTERM stops every process it started. Running it again
on the same FLEET_HOME reuses the data: the fleet file copy, the artifacts,
the agents' installations, both databases and the tokens.

Ports come from flags or the environment: FLEET_DEMO_PREFECT_PORT (4200),
FLEET_DEMO_API_PORT (8000), FLEET_DEMO_AGENT_PORT_BASE (8100; one port per
instance from there).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from deployments.prefect_server import server_env
from deployments.setup import HEARTBEAT_SECONDS
from deployments.supervisor import Child, Supervisor

__all__ = ["Demo", "DemoConfig", "main"]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "fleet.yaml"
ADVISORY = ROOT / "examples" / "advisories" / "FLEET-2026-0011.osv.json"
ACTOR = "fleet-demo"
OPERATOR = "demo-operator"
APPROVER = "demo-approver"
BANNER_READY = "Fleet is up."


class DemoError(RuntimeError):
    """The stack could not be brought up (a port taken, a process that died)."""


@dataclass(frozen=True)
class DemoConfig:
    home: Path
    fleet_file: Path
    prefect_port: int
    api_port: int
    agent_port_base: int
    host: str = "127.0.0.1"

    @property
    def work(self) -> Path:
        return self.home / "demo"

    @property
    def prefect_url(self) -> str:
        return f"http://{self.host}:{self.prefect_port}"

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"


@dataclass
class Demo:
    """The processes of the stack, started in order and stopped in reverse.

    While it comes up, a child that dies stops it (a port taken, a broken
    install: restarting would not help). Once it is up, `supervise()` keeps
    it up: a child that dies is logged and restarted with backoff.
    """

    config: DemoConfig
    say: Callable[[str], None] = print
    _sup: Supervisor | None = None

    @property
    def sup(self) -> Supervisor:
        if self._sup is None:
            self._sup = Supervisor(
                env=self.env(), cwd=ROOT, logs=self.config.work / "logs", say=self.say
            )
        return self._sup

    @property
    def children(self) -> list[Child]:
        return self.sup.children

    def env(self) -> dict[str, str]:
        c = self.config
        env = server_env()
        env.update(
            FLEET_HOME=str(c.home),
            PREFECT_HOME=str(c.home / "prefect"),
            PREFECT_API_URL=f"{c.prefect_url}/api",
            PREFECT_UI_URL=c.prefect_url,
            # The approval form and notifications link to the console.
            FLEET_CONSOLE_URL=c.api_url,
            PREFECT_SERVER_API_HOST=c.host,
            PREFECT_SERVER_API_PORT=str(c.prefect_port),
            PREFECT_LOGGING_LEVEL=env.get("PREFECT_LOGGING_LEVEL", "INFO"),
            # Flow runs beat so that a run whose process dies is marked Crashed (fleet setup).
            PREFECT_FLOWS_HEARTBEAT_FREQUENCY=str(HEARTBEAT_SECONDS),
            PYTHONUNBUFFERED="1",
        )
        env.pop("FLEET_DATABASE_URL", None)  # the demo's data is under FLEET_HOME only
        env.pop("PREFECT_API_KEY", None)
        return env

    def start(self, name: str, argv: Sequence[str]) -> Child:
        """Start a child in its own session (Ctrl-C reaches only this process, which
        then stops the children in order); its output goes to a log under FLEET_HOME."""
        return self.sup.start(name, argv)

    def check_alive(self) -> None:
        """While coming up: a child that died is an error."""
        for child, code in self.sup.dead():
            tail = child.log.read_text(errors="replace")[-2000:]
            raise DemoError(f"{child.name} exited with {code}; its log {child.log}:\n{tail}")

    def supervise(self) -> None:
        """Once up: restart what died (with backoff), and say so."""
        self.sup.tick()

    def wait_for(self, what: str, probe: Callable[[], bool], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if probe():
                    return
            except (httpx.HTTPError, OSError):
                pass
            time.sleep(0.25)
        raise DemoError(f"{what} did not come up within {timeout:.0f} s")

    def stop(self) -> None:
        """Stop the children in reverse order of start: `fleet serve` first and alone
        (SIGINT: Prefect's serve pauses its schedules and lets go of the server), then
        the rest (SIGTERM); SIGKILL to what is left after a grace period."""
        if self._sup is not None:
            self._sup.stop(first=["fleet-serve"], first_signal=signal.SIGINT)


def _http_ok(url: str) -> bool:
    return httpx.get(url, timeout=2).status_code == 200


def _instances(fleet_file: Path) -> list[dict[str, Any]]:
    import yaml

    data = yaml.safe_load(fleet_file.read_text())
    return list(data.get("instances") or [])


def prepare_fleet_file(config: DemoConfig, say: Callable[[str], None]) -> Path:
    """The copy under FLEET_HOME with demo artifacts; made once, then reused."""
    import yaml

    from fleet.artifacts import build_demo_artifacts

    copy = config.work / "fleet.yaml"
    if copy.exists():
        say(f"fleet file: reusing {copy}")
        return copy
    config.work.mkdir(parents=True, exist_ok=True)
    data = yaml.safe_load(config.fleet_file.read_text())
    # Each instance is reached through the FleetAgent block named after it.
    for entry in data.get("instances") or []:
        entry["target"] = entry["name"]
    tmp = copy.with_name("fleet.yaml.tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    refs = build_demo_artifacts(tmp, config.work / "artifacts", size=4_000)
    os.replace(tmp, copy)
    say(f"fleet file: {copy} (from {config.fleet_file}; {len(refs)} demo artifacts)")
    return copy


def _agent_token(directory: Path) -> Path:
    token_file = directory / "token"
    if not token_file.exists():
        directory.mkdir(parents=True, exist_ok=True)
        token_file.write_text(secrets.token_urlsafe(24) + "\n")
        token_file.chmod(0o600)
    return token_file


def start_agents(demo: Demo, names: Sequence[str]) -> dict[str, tuple[str, str]]:
    """One agent per instance on consecutive ports: name -> (url, token)."""
    c = demo.config
    reached: dict[str, tuple[str, str]] = {}
    for i, name in enumerate(names):
        directory = c.work / "agents" / name
        token_file = _agent_token(directory)
        port = c.agent_port_base + i
        demo.start(
            f"agent-{name}",
            [
                sys.executable,
                "-m",
                "fleet.agent",
                "agent",
                "serve",
                "--root",
                str(directory / "root"),
                "--port",
                str(port),
                "--host",
                c.host,
                "--token-file",
                str(token_file),
            ],
        )
        reached[name] = (f"http://{c.host}:{port}", token_file.read_text().strip())
    for name, (url, token) in reached.items():
        demo.wait_for(f"agent {name} at {url}", _agent_ready(url, token), timeout=60)
    return reached


def _agent_ready(url: str, token: str) -> Callable[[], bool]:
    headers = {"Authorization": f"Bearer {token}"}
    return lambda: httpx.get(f"{url}/v1/faults", headers=headers, timeout=2).status_code == 200


def register_targets(agents: dict[str, tuple[str, str]]) -> None:
    from blocks.targets import FleetAgent

    for name, (url, token) in agents.items():
        FleetAgent(base_url=url, token=token, timeout=120).save(name, overwrite=True)


def api_tokens(config: DemoConfig) -> dict[str, str]:
    """An operator and an approver token; kept (0600) under FLEET_HOME so that a
    second run prints the same ones (Fleet itself stores only their hashes)."""
    from fleet.services import tokens

    path = config.work / "tokens.json"
    saved: dict[str, dict[str, str]] = json.loads(path.read_text()) if path.exists() else {}
    active = {t.name for t in tokens.list_tokens() if t.revoked_at is None}
    existing = {t.name for t in tokens.list_tokens()}
    out: dict[str, str] = {}
    for role, base in (("operator", OPERATOR), ("approver", APPROVER)):
        entry = saved.get(role)
        if entry and entry["name"] in active:
            out[role] = entry["secret"]
            continue
        name, n = base, 1
        while name in existing:  # names are never reused
            n += 1
            name = f"{base}-{n}"
        _, secret = tokens.create_token(name, role, actor=ACTOR)
        saved[role] = {"name": name, "secret": secret}
        out[role] = secret
    path.write_text(json.dumps(saved, indent=2) + "\n")
    path.chmod(0o600)
    return out


def _served_since(started: datetime) -> Callable[[], bool]:
    """True once `fleet serve` has (re)created the deployment of every flow."""

    def probe() -> bool:
        from prefect.client.orchestration import get_client
        from prefect.exceptions import ObjectNotFound

        from deployments.catalog import FLOWS

        with get_client(sync_client=True) as client:
            for entry in FLOWS:
                try:
                    found = client.read_deployment_by_name(entry.deployment)
                except ObjectNotFound:
                    return False
                if found.updated is None or found.updated < started:
                    return False
        return True

    return probe


def bring_up(demo: Demo) -> dict[str, str]:
    """Start everything in order; returns the API tokens by role."""
    c = demo.config
    say = demo.say
    (c.home / "prefect").mkdir(parents=True, exist_ok=True)
    fleet_cli = [sys.executable, "-m", "fleet.cli.main"]

    say(f"Prefect server: starting on {c.prefect_url} (SQLite under {c.home / 'prefect'})")
    demo.start(
        "prefect-server",
        [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            c.host,
            "--port",
            str(c.prefect_port),
        ],
    )

    from fleet.cli.main import main as fleet

    copy = prepare_fleet_file(c, say)
    names = [str(i["name"]) for i in _instances(copy)]
    say(f"agents: starting {len(names)} from port {c.agent_port_base}")
    agents = start_agents(demo, names)

    say("Fleet database: fleet init, fleet apply")
    if fleet(["init"]) != 0:
        raise DemoError("could not create Fleet's database")
    with contextlib.redirect_stdout(io.StringIO()) as applied:
        code = fleet(["apply", str(copy), "--actor", ACTOR])
    say("  " + (applied.getvalue().splitlines() or ["(no output)"])[0])
    if code != 0:
        raise DemoError(f"could not apply {copy} to Fleet's database")

    demo.wait_for(
        "the Prefect server", lambda: _http_ok(f"{c.prefect_url}/api/health"), timeout=180
    )
    say("Prefect workspace: fleet setup")
    if fleet(["setup"]) != 0:
        raise DemoError("fleet setup failed")
    register_targets(agents)
    say(f"target blocks: {len(agents)} FleetAgent blocks named after the instances")
    issued = api_tokens(c)

    say(f"Fleet API: starting on {c.api_url}")
    demo.start(
        "fleet-api", [*fleet_cli, "api", "serve", "--host", c.host, "--port", str(c.api_port)]
    )
    started = datetime.now(UTC)
    say("flows: fleet serve (every flow with its schedule)")
    demo.start("fleet-serve", [*fleet_cli, "serve"])
    demo.wait_for("the Fleet API", lambda: _http_ok(f"{c.api_url}/health"), timeout=60)
    demo.wait_for("the served flows", _served_since(started), timeout=120)
    # Now that recover/fleet exists, setup can point the crash automation at it.
    with contextlib.redirect_stdout(io.StringIO()):
        if fleet(["setup"]) != 0:
            raise DemoError("fleet setup (after the flows were served) failed")
    return issued


def banner(config: DemoConfig, issued: dict[str, str]) -> str:
    ui, api = config.prefect_url, config.api_url
    env = f"FLEET_HOME={config.home} PREFECT_API_URL={ui}/api"
    try:
        advisory = ADVISORY.relative_to(Path.cwd())
    except ValueError:
        advisory = ADVISORY
    return f"""
{BANNER_READY}
  Fleet console {api}/
  Prefect UI    {ui}
  Fleet API     {api}/docs
  logs          {config.work / "logs"}

API tokens (sign in to the console with one; or Authorization: Bearer ... in the API):
  operator      {issued["operator"]}
  approver      {issued["approver"]}

Three things to try:
  1. Trigger a rollout from the UI: Deployments > compile-and-deploy / fleet > Run >
     Custom run; set requested_by to your name and submit. Auto-update instances
     deploy at once; the critical fix is enforced on the frozen initech-prod.
  2. Approve the paused run: the rollout waits for the manual-approval instances
     (lts needs two approvers, wayne-beta one). Approve as a verified principal in
     the console ({api}/console/approvals, signed in with the approver token), or:
       curl -s -H "Authorization: Bearer {issued["approver"]}" {api}/approvals
       curl -s -X POST -H "Authorization: Bearer {issued["approver"]}" \\
            -H 'Content-Type: application/json' -d '{{"decision": "approve"}}' \\
            {api}/approvals/<flow-run-id>
     or open the run in the UI, click Resume and fill in the form (self-declared).
  3. Import a critical advisory and watch it enforced on a frozen instance:
       {env} \\
         .venv/bin/fleet advisories import {advisory} --component-map vendor-worker=worker
     then run compliance-scan / fleet from the UI (or wait for the hour): worker
     moves to 2.3.1 on the frozen initech-prod, and nothing else changes there.
       {env} .venv/bin/fleet history initech-prod

Ctrl-C stops everything; run it again to come back to the same data.
"""


def _parse(argv: Sequence[str] | None) -> DemoConfig:
    parser = argparse.ArgumentParser(
        prog="python -m deployments.demo", description=__doc__.split("\n\n")[0]
    )
    env = os.environ
    parser.add_argument("--file", type=Path, default=EXAMPLE, help="fleet file to start from")
    parser.add_argument(
        "--prefect-port", type=int, default=int(env.get("FLEET_DEMO_PREFECT_PORT", 4200))
    )
    parser.add_argument("--api-port", type=int, default=int(env.get("FLEET_DEMO_API_PORT", 8000)))
    parser.add_argument(
        "--agent-port-base", type=int, default=int(env.get("FLEET_DEMO_AGENT_PORT_BASE", 8100))
    )
    args = parser.parse_args(argv)
    home = Path(env.get("FLEET_HOME") or ".fleet").resolve()
    return DemoConfig(
        home=home,
        fleet_file=args.file.resolve(),
        prefect_port=args.prefect_port,
        api_port=args.api_port,
        agent_port_base=args.agent_port_base,
    )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    config = _parse(argv)
    demo = Demo(config, say=lambda line: print(line, flush=True))
    # Everything this process does in itself (init, apply, setup, blocks) uses the same
    # settings as its children: set them before Prefect or Fleet read their settings.
    os.environ.update({k: v for k, v in demo.env().items() if k.startswith(("FLEET_", "PREFECT_"))})
    os.environ.pop("FLEET_DATABASE_URL", None)
    # Explicit handlers: a shell's background job starts with SIGINT ignored, and an
    # ignored signal would stay ignored in every child too (exec keeps SIG_IGN).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    code = 0
    try:
        issued = bring_up(demo)
        print(banner(config, issued), flush=True)
        while True:
            demo.supervise()
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
    except DemoError as exc:
        print(f"fleet demo: {exc}", file=sys.stderr, flush=True)
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        demo.stop()
    print("stopped: every process of the demo has exited", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
