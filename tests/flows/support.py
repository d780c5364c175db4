"""A small living fleet for flow tests: demo artifacts, real agents, target blocks,
Fleet's database, all on loopback and temporary files."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from blocks.targets import FleetAgent
from fleet.artifacts import build_demo_artifact
from fleet.core.fleetfile import parse_fleet_data
from fleet.services.fleet import apply_fleet_file
from tests.agent.support import AgentProcess

COMPONENTS = ("api", "web")


@dataclass
class World:
    """Instances with agents; the fleet file data they were created from."""

    tmp: Path
    store: Path
    data: dict[str, Any]
    agents: dict[str, AgentProcess] = field(default_factory=dict)

    def publish(self, component: str, version: str, *, healthy: bool = True, **extra: Any) -> None:
        """Build the artifact and add the version to the fleet (applied at once)."""
        ref = build_demo_artifact(self.store, component, version, size=2_000, healthy=healthy)
        self.data["versions"].append(
            {
                "component": component,
                "version": version,
                "released_at": "2026-01-01T00:00:00Z",
                "artifact": {"url": ref.url, "sha256": ref.sha256},
                **extra,
            }
        )
        self.apply()

    def apply(self) -> None:
        apply_fleet_file(parse_fleet_data(self.data), actor="tests")

    def set_faults(self, instance: str, **faults: Any) -> None:
        agent = self.agents[instance]
        r = httpx.put(
            f"{agent.url}/v1/faults",
            json=faults,
            headers={"Authorization": f"Bearer {agent.token}"},
            timeout=5,
        )
        r.raise_for_status()

    def applies(self, instance: str) -> list[dict[str, Any]]:
        """The agent's apply log: one entry per apply or rollback that held its lock."""
        log = self.agents[instance].root / "apply-log.jsonl"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]

    def running(self, instance: str) -> dict[str, str]:
        agent = self.agents[instance]
        r = httpx.get(
            f"{agent.url}/v1/state",
            headers={"Authorization": f"Bearer {agent.token}"},
            timeout=5,
        )
        r.raise_for_status()
        return dict(r.json()["components"])


def build_world(
    tmp: Path,
    start_agent: Callable[..., AgentProcess],
    instances: Iterable[tuple[str, str, str | None]],
    *,
    versions: Iterable[str] = ("1.0.0", "1.1.0"),
    approvals_required: int = 2,
    approval_timeout: str = "1h",
) -> World:
    """`instances`: (name, channel, policy_override) on channels auto, manual and frozen."""
    instances = list(instances)
    store = tmp / "store"
    data: dict[str, Any] = {
        "format": 1,
        "components": list(COMPONENTS),
        "versions": [],
        "channels": [
            {"name": "auto", "policy": "auto-update"},
            {
                "name": "manual",
                "policy": "manual-approval",
                "approvals_required": approvals_required,
                "approval_timeout": approval_timeout,
            },
            {"name": "frozen", "policy": "frozen"},
        ],
        "instances": [],
    }
    for component in COMPONENTS:
        for version in versions:
            ref = build_demo_artifact(store, component, version, size=2_000)
            data["versions"].append(
                {
                    "component": component,
                    "version": version,
                    "released_at": "2026-01-01T00:00:00Z",
                    "artifact": {"url": ref.url, "sha256": ref.sha256},
                }
            )
    world = World(tmp, store, data)
    first = next(iter(versions))
    lock = threading.Lock()
    for name, channel, override in instances:
        with lock:
            agent = start_agent()
        world.agents[name] = agent
        FleetAgent(base_url=agent.url, token=agent.token, timeout=30).save(name, overwrite=True)
        entry: dict[str, Any] = {
            "name": name,
            "customer": name.title(),
            "channel": channel,
            "target": name,
            "current": {c: first for c in COMPONENTS},
        }
        if override:
            entry["policy_override"] = override
        data["instances"].append(entry)
    world.apply()
    return world
