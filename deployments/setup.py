"""`fleet setup`: make a Prefect workspace ready for Fleet; running it again changes nothing.

It creates (or brings back in line) the process work pool `fleet`, Fleet's
block types, and three automations (instance locks are Fleet's own, in its
database: nothing to create here):
- a run whose heartbeats stop is marked Crashed (a zombie: its process or
  machine died); Fleet's flow processes beat every `HEARTBEAT_SECONDS`;
- a crashed run of a Fleet flow starts `recover/fleet` for it (once that
  deployment exists: run `fleet setup` again after deploying the flows), and
  notifies through the notification block when one is named;
- when a notification block is named, a run that pauses for approval notifies.
Each step reports `created`, `updated`, `unchanged` or why it was skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from deployments.catalog import WORK_POOL
from fleet.core.errors import FleetError, InputError, NotFoundError

__all__ = [
    "AUTOMATION_NAME",
    "HEARTBEAT_SECONDS",
    "RECOVERY_AUTOMATION",
    "ZOMBIE_AUTOMATION",
    "SetupStep",
    "approval_automation",
    "recovery_automation",
    "setup",
    "zombie_automation",
]

AUTOMATION_NAME = "fleet: run waiting for approval"
ZOMBIE_AUTOMATION = "fleet: runs without heartbeats are crashed"
RECOVERY_AUTOMATION = "fleet: recover after a crashed run"
# PREFECT_FLOWS_HEARTBEAT_FREQUENCY of the processes that run Fleet's flows (Prefect's
# minimum is 30); a run is a zombie after MISSED_HEARTBEATS beats did not come.
HEARTBEAT_SECONDS = 30
MISSED_HEARTBEATS = 3
RECOVER_DEPLOYMENT = "recover/fleet"
# The flows whose crash can leave a deploy half done.
DEPLOYING_FLOWS = ("compile-and-deploy", "patch-rollout", "rollback", "auto-update", "drift-check")


@dataclass(frozen=True, slots=True)
class SetupStep:
    kind: str
    name: str
    action: str  # created, registered, updated, unchanged, skipped
    note: str = ""

    def __str__(self) -> str:
        return f"{self.kind} {self.name}: {self.action}" + (f" ({self.note})" if self.note else "")


def _work_pool(client: Any, limit: int | None) -> SetupStep:
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectNotFound

    try:
        pool = client.read_work_pool(WORK_POOL)
    except ObjectNotFound:
        client.create_work_pool(
            WorkPoolCreate(name=WORK_POOL, type="process", concurrency_limit=limit)
        )
        return SetupStep("work pool", WORK_POOL, "created")
    if pool.type != "process":
        raise FleetError(
            f"Work pool {WORK_POOL!r} exists with type {pool.type!r}; Fleet needs 'process'"
        )
    if pool.concurrency_limit != limit:
        client.update_work_pool(WORK_POOL, WorkPoolUpdate(concurrency_limit=limit))
        return SetupStep("work pool", WORK_POOL, "updated")
    return SetupStep("work pool", WORK_POOL, "unchanged")


def _block_types(client: Any) -> list[SetupStep]:
    from prefect.exceptions import ObjectNotFound

    from blocks.targets import BLOCK_TYPES, register_block_types

    missing = []
    for block_type in BLOCK_TYPES:
        try:
            client.read_block_schema_by_checksum(block_type._calculate_schema_checksum())
        except ObjectNotFound:
            missing.append(block_type.get_block_type_slug())
    if missing:
        register_block_types()
    return [
        SetupStep(
            "block type",
            t.get_block_type_slug(),
            "registered" if t.get_block_type_slug() in missing else "unchanged",
        )
        for t in BLOCK_TYPES
    ]


def approval_automation(block_document_id: Any, console_url: str | None = None) -> Any:
    """The automation: a flow run entered Paused (it waits for an approval form).
    With the console's address, the notification links to the run there."""
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    body = (
        "Flow run {{ flow_run.name }} ({{ flow.name }}) is paused waiting for "
        "an approval: {{ flow_run|ui_url }}"
    )
    if console_url:
        body += (
            "\nApprove or reject it as yourself (verified) in Fleet's console: "
            + console_url.rstrip("/")
            + "/console/approvals/{{ flow_run.id }}"
        )

    return AutomationCore(
        name=AUTOMATION_NAME,
        description="Notify when a Fleet run pauses for approval (Resume in the UI or the API).",
        enabled=True,
        trigger=EventTrigger(
            expect={"prefect.flow-run.Paused"},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[
            SendNotification(
                block_document_id=block_document_id,
                subject="Fleet: {{ flow_run.name }} waits for approval",
                body=body,
            )
        ],
    )


def zombie_automation(silence: int | None = None) -> Any:
    """A run that stops beating (its process or machine died) is marked Crashed.

    Only a running process beats: a suspended run (waiting days for an
    approval, no process) and a run waiting for a retry are expected to be
    silent, so their states end the wait like the final ones.
    """
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    if silence is None:
        silence = HEARTBEAT_SECONDS * MISSED_HEARTBEATS
    ends = ("Completed", "Failed", "Cancelled", "Crashed", "Paused", "Suspended", "AwaitingRetry")
    return AutomationCore(
        name=ZOMBIE_AUTOMATION,
        description=(
            f"Mark a flow run Crashed when no heartbeat came for {silence} s (flow processes "
            f"beat every {HEARTBEAT_SECONDS} s): its process or machine is gone (a zombie run)."
        ),
        enabled=True,
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *(f"prefect.flow-run.{s}" for s in ends)},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=silence),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"no heartbeat for {silence} s: the run's process or machine stopped",
            )
        ],
    )


def recovery_automation(deployment_id: Any, block_document_id: Any | None = None) -> Any:
    """A crashed run of a deploying flow starts `recover/fleet` for it, and notifies."""
    from prefect.events.actions import RunDeployment, SendNotification
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    actions: list[Any] = [
        RunDeployment(
            source="selected",
            deployment_id=deployment_id,
            # A plain "{{ flow_run.id }}" is rendered through `tojson`, which fails on a
            # UUID and the action with it ("InvalidJinja"): a jinja template is a string.
            parameters={
                "flow_run_id": {"__prefect_kind": "jinja", "template": "{{ flow_run.id }}"},
                "wait_for_leases": True,
            },
        )
    ]
    if block_document_id is not None:
        actions.append(
            SendNotification(
                block_document_id=block_document_id,
                subject="Fleet: {{ flow_run.name }} crashed; recovery started",
                body=(
                    "Flow run {{ flow_run.name }} ({{ flow.name }}) crashed: "
                    "{{ flow_run|ui_url }}. Fleet's recover flow closes what it left open "
                    "and records what its instances run; its locks are free within a lease."
                ),
            )
        )
    return AutomationCore(
        name=RECOVERY_AUTOMATION,
        description="Recover what a crashed Fleet run left open, and tell the operator.",
        enabled=True,
        trigger=EventTrigger(
            expect={"prefect.flow-run.Crashed"},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={
                "prefect.resource.role": "flow",
                "prefect.resource.name": list(DEPLOYING_FLOWS),
            },
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=actions,
    )


def _canonical(value: Any) -> Any:
    """JSON with its sets' order left out: a trigger's `expect` is a set, and the
    server may give it back in another order than it was sent."""
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [_canonical(v) for v in value]
        return sorted(items) if all(isinstance(v, str) for v in items) else items
    return value


def _ensure_automation(client: Any, wanted: Any) -> SetupStep:
    existing = client.read_automations_by_name(wanted.name)
    if not existing:
        client.create_automation(wanted)
        return SetupStep("automation", wanted.name, "created")
    current = existing[0]
    keys = {"name", "description", "enabled", "trigger", "actions"}
    have = _canonical(current.model_dump(mode="json", include=keys))
    if have == _canonical(wanted.model_dump(mode="json", include=keys)):
        return SetupStep("automation", wanted.name, "unchanged")
    client.update_automation(current.id, wanted)
    return SetupStep("automation", wanted.name, "updated")


def _notification_block(client: Any, notification_block: str) -> Any:
    from prefect.exceptions import ObjectNotFound

    slug, _, name = notification_block.partition("/")
    if not name:
        raise InputError(
            f"Invalid notification block: {notification_block!r} "
            "(expected <block-type-slug>/<name>, e.g. slack-webhook/ops)"
        )
    try:
        return client.read_block_document_by_name(name, slug, include_secrets=False)
    except ObjectNotFound as exc:
        raise NotFoundError(f"No notification block {notification_block!r}") from exc


def _recovery(client: Any, notification_block: str | None) -> SetupStep:
    from prefect.exceptions import ObjectNotFound

    try:
        deployment = client.read_deployment_by_name(RECOVER_DEPLOYMENT)
    except ObjectNotFound:
        return SetupStep(
            "automation",
            RECOVERY_AUTOMATION,
            "skipped",
            f"{RECOVER_DEPLOYMENT} is not deployed yet: deploy the flows, then run fleet "
            "setup again",
        )
    block = None
    if notification_block:
        block = _notification_block(client, notification_block).id
    return _ensure_automation(client, recovery_automation(deployment.id, block))


def _automation(client: Any, notification_block: str) -> SetupStep:
    from fleet.settings import get_settings

    document = _notification_block(client, notification_block)
    return _ensure_automation(client, approval_automation(document.id, get_settings().console_url))


def setup(
    *,
    pool_limit: int | None = None,
    notification_block: str | None = None,
) -> list[SetupStep]:
    """Bring the Prefect workspace in line with what Fleet needs; idempotent."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        steps = [_work_pool(client, pool_limit)]
        steps.extend(_block_types(client))
        from fleet.settings import get_settings

        silence = get_settings().zombie_after_seconds
        steps.append(_ensure_automation(client, zombie_automation(silence)))
        steps.append(_recovery(client, notification_block))
        if notification_block:
            steps.append(_automation(client, notification_block))
    return steps
