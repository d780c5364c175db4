"""Instances; admins set an instance's policy override."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from fleet.api.deps import AdminDep, EngineDep, PageDep, ViewerDep
from fleet.api.errors import problem_responses
from fleet.api.models import InstancePublic, Page, PolicyBody
from fleet.api.routes._convert import page
from fleet.core.channels import Policy
from fleet.core.errors import NotFoundError
from fleet.core.fleetfile import InstanceEntry
from fleet.services import catalog
from fleet.services.fleet import export_fleet_file

router = APIRouter(prefix="/instances", tags=["instances"])

Instance = Annotated[str, Path(max_length=63, examples=["acme-prod"])]


def instance_json(i: InstanceEntry) -> dict[str, Any]:
    return {
        "name": i.name,
        "customer": i.customer,
        "channel": i.channel,
        "labels": dict(i.labels),
        "policy_override": None if i.policy_override is None else i.policy_override.value,
        "target": i.target,
        "current": dict(i.current),
    }


@router.get("", response_model=Page[InstancePublic], responses=problem_responses(401, 403, 422))
def list_instances(
    _: ViewerDep,
    engine: EngineDep,
    paging: PageDep,
    channel: Annotated[str | None, Query(max_length=63, description="Only this channel.")] = None,
) -> Any:
    """List instances (not retired), by name."""
    items = [
        instance_json(i)
        for i in export_fleet_file(engine=engine).instances
        if channel is None or i.channel == channel
    ]
    return page(items, paging)


@router.get("/{name}", response_model=InstancePublic, responses=problem_responses(401, 403, 404))
def read_instance(name: Instance, _: ViewerDep, engine: EngineDep) -> Any:
    """Read one instance: channel, labels, policy override and what it runs."""
    found = next((i for i in export_fleet_file(engine=engine).instances if i.name == name), None)
    if found is None:
        raise NotFoundError(f"Unknown instance: {name!r}")
    return instance_json(found)


@router.put(
    "/{name}/policy",
    response_model=InstancePublic,
    responses=problem_responses(401, 403, 404, 422),
)
def put_policy(name: Instance, body: PolicyBody, principal: AdminDep, engine: EngineDep) -> Any:
    """Set or clear (null) an instance's policy override, e.g. frozen during an audit (admin)."""
    policy = None if body.policy_override is None else Policy(body.policy_override)
    changed = catalog.set_policy_override(name, policy, actor=principal.name, engine=engine)
    return instance_json(changed)
