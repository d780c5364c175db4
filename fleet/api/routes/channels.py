"""Channels and their policies; admins create and change them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from fleet.api.deps import AdminDep, EngineDep, PageDep, ViewerDep
from fleet.api.errors import problem_responses
from fleet.api.models import ChannelBody, ChannelPublic, Page
from fleet.api.routes._convert import entry, page
from fleet.core.errors import NotFoundError
from fleet.core.fleetfile import ChannelEntry
from fleet.services import catalog
from fleet.services.fleet import export_fleet_file

router = APIRouter(prefix="/channels", tags=["channels"])

Channel = Annotated[str, Path(max_length=63, examples=["stable"])]


def channel_json(c: ChannelEntry) -> dict[str, Any]:
    data = c.to_data()
    return {
        "name": c.name,
        "policy": c.policy.value,
        "constraint": c.constraint,
        "allow_prereleases": c.allow_prereleases,
        "soak": data.get("soak", "0s"),
        "maintenance_window": data.get("maintenance_window"),
        "approvals_required": c.approvals_required,
        "approval_timeout": data.get("approval_timeout", "72h"),
        "verified_approvals": c.verified_approvals,
    }


def _find(name: str, engine: Any) -> ChannelEntry:
    found = next((c for c in export_fleet_file(engine=engine).channels if c.name == name), None)
    if found is None:
        raise NotFoundError(f"Unknown channel: {name!r}")
    return found


@router.get("", response_model=Page[ChannelPublic], responses=problem_responses(401, 403))
def list_channels(_: ViewerDep, engine: EngineDep, paging: PageDep) -> Any:
    """List channels with their policy, constraint, soak, window and approvals."""
    return page([channel_json(c) for c in export_fleet_file(engine=engine).channels], paging)


@router.get("/{name}", response_model=ChannelPublic, responses=problem_responses(401, 403, 404))
def read_channel(name: Channel, _: ViewerDep, engine: EngineDep) -> Any:
    """Read one channel."""
    return channel_json(_find(name, engine))


@router.put("/{name}", response_model=ChannelPublic, responses=problem_responses(401, 403, 422))
def put_channel(name: Channel, body: ChannelBody, principal: AdminDep, engine: EngineDep) -> Any:
    """Create a channel or replace its settings, policy included (admin)."""
    data = body.model_dump(exclude_none=True)
    data["name"] = name
    catalog.set_channel(entry(ChannelEntry, data), actor=principal.name, engine=engine)
    return channel_json(_find(name, engine))
