"""`fleet setup`: make a Prefect workspace ready for Fleet; running it again changes nothing.

It creates (or brings back in line) the process work pool `fleet`, one
concurrency limit of 1 per instance (the per-instance deploy lock), Fleet's
block types, and, when a notification block is named, an automation that
notifies when a run pauses for approval. Each step reports `created`,
`updated` or `unchanged`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from deployments.catalog import WORK_POOL
from fleet.core.errors import FleetError, InputError, NotFoundError

__all__ = ["AUTOMATION_NAME", "SetupStep", "approval_automation", "setup"]

AUTOMATION_NAME = "fleet: run waiting for approval"


@dataclass(frozen=True, slots=True)
class SetupStep:
    kind: str
    name: str
    action: str  # created, registered, updated, unchanged

    def __str__(self) -> str:
        return f"{self.kind} {self.name}: {self.action}"


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


def _limits(client: Any, instances: Iterable[str]) -> list[SetupStep]:
    from prefect.client.schemas.actions import (
        GlobalConcurrencyLimitCreate,
        GlobalConcurrencyLimitUpdate,
    )
    from prefect.exceptions import ObjectNotFound

    from tasks.deploying import lock_name

    steps = []
    for instance in instances:
        name = lock_name(instance)
        try:
            found = client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
            steps.append(SetupStep("concurrency limit", name, "created"))
            continue
        if found.limit != 1 or not found.active:
            client.update_global_concurrency_limit(
                name, GlobalConcurrencyLimitUpdate(limit=1, active=True)
            )
            steps.append(SetupStep("concurrency limit", name, "updated"))
        else:
            steps.append(SetupStep("concurrency limit", name, "unchanged"))
    return steps


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


def _automation(client: Any, notification_block: str) -> SetupStep:
    from prefect.exceptions import ObjectNotFound

    slug, _, name = notification_block.partition("/")
    if not name:
        raise InputError(
            f"Invalid notification block: {notification_block!r} "
            "(expected <block-type-slug>/<name>, e.g. slack-webhook/ops)"
        )
    try:
        document = client.read_block_document_by_name(name, slug, include_secrets=False)
    except ObjectNotFound as exc:
        raise NotFoundError(f"No notification block {notification_block!r}") from exc
    from fleet.settings import get_settings

    wanted = approval_automation(document.id, get_settings().console_url)
    existing = client.read_automations_by_name(AUTOMATION_NAME)
    if not existing:
        client.create_automation(wanted)
        return SetupStep("automation", AUTOMATION_NAME, "created")
    current = existing[0]
    keys = ("name", "description", "enabled", "trigger", "actions")
    have = current.model_dump(mode="json", include=set(keys))
    want = wanted.model_dump(mode="json", include=set(keys))
    if have == want:
        return SetupStep("automation", AUTOMATION_NAME, "unchanged")
    client.update_automation(current.id, wanted)
    return SetupStep("automation", AUTOMATION_NAME, "updated")


def setup(
    *,
    instances: Iterable[str] = (),
    pool_limit: int | None = None,
    notification_block: str | None = None,
) -> list[SetupStep]:
    """Bring the Prefect workspace in line with what Fleet needs; idempotent."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        steps = [_work_pool(client, pool_limit)]
        steps.extend(_limits(client, sorted(set(instances))))
        steps.extend(_block_types(client))
        if notification_block:
            steps.append(_automation(client, notification_block))
    return steps
