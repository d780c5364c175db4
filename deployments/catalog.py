"""Every Fleet flow with its deployment: entrypoint, schedule, default parameters.

`prefect.yaml` says the same for `prefect deploy`; a test keeps both in step.
Each flow has one deployment named `fleet` in the work pool `fleet`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DEPLOYMENT_NAME", "FLOWS", "TIMEZONE", "WORK_POOL", "FlowEntry", "load_flow"]

DEPLOYMENT_NAME = "fleet"
WORK_POOL = "fleet"
TIMEZONE = "UTC"


@dataclass(frozen=True, slots=True)
class FlowEntry:
    """One flow: its name, `path/file.py:function` entrypoint, cron and parameters."""

    name: str
    entrypoint: str
    cron: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    @property
    def deployment(self) -> str:
        return f"{self.name}/{DEPLOYMENT_NAME}"


FLOWS: tuple[FlowEntry, ...] = (
    FlowEntry(
        "compile-and-deploy",
        "flows/compile_and_deploy.py:compile_and_deploy",
        parameters={"dry_run": False, "requested_by": "scheduler"},
        description="Plan the selection, get approvals, deploy in waves.",
    ),
    FlowEntry(
        "patch-rollout",
        "flows/patch_rollout.py:patch_rollout",
        parameters={"requested_by": "security-policy"},
        description="Move every instance an advisory affects to its fix.",
    ),
    FlowEntry(
        "rollback",
        "flows/rollback.py:rollback",
        parameters={"target": "previous"},
        description="Put instances back on a manifest that ran before.",
    ),
    FlowEntry(
        "compliance-scan",
        "flows/compliance_scan.py:compliance_scan",
        cron="0 * * * *",
        parameters={"enforce": True},
        description="Hourly: affected instances, deadlines, breach events, enforcement.",
    ),
    FlowEntry(
        "auto-update",
        "flows/auto_update.py:auto_update",
        cron="*/15 * * * *",
        description="Every 15 minutes: auto-update instances in an open maintenance window.",
    ),
    FlowEntry(
        "drift-check",
        "flows/drift_check.py:drift_check",
        cron="30 * * * *",
        parameters={"repair": False},
        description="Hourly: compare what instances run with the recorded manifests.",
    ),
    FlowEntry(
        "recover",
        "flows/recover.py:recover",
        parameters={"wait_for_leases": True},
        description="After a crash: close what a dead run left open, record what runs.",
    ),
)


def load_flow(entry: FlowEntry) -> Any:
    """Import the flow object an entrypoint names (`flows/x.py:fn` -> `flows.x.fn`)."""
    path, function = entry.entrypoint.split(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return getattr(module, function)
