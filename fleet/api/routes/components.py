"""Components and their versions; operators publish versions."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from fleet.api.deps import EngineDep, OperatorDep, PageDep, ViewerDep
from fleet.api.errors import problem_responses
from fleet.api.models import ComponentPublic, Page, VersionCreate, VersionPublic
from fleet.api.routes._convert import entry, page
from fleet.core.errors import NotFoundError
from fleet.core.fleetfile import VersionEntry
from fleet.services import catalog
from fleet.services._common import now_or_clock
from fleet.services.fleet import export_fleet_file

router = APIRouter(prefix="/components", tags=["components"])

Component = Annotated[str, Path(max_length=63, examples=["api"])]


def version_json(v: VersionEntry) -> dict[str, Any]:
    return {
        "component": v.component,
        "version": v.version,
        "released_at": v.released_at,
        "artifact": None if v.artifact is None else v.artifact.model_dump(),
        "requires": dict(v.requires),
        "yanked": v.yanked,
        "yanked_reason": v.yanked_reason,
    }


@router.get("", response_model=Page[ComponentPublic], responses=problem_responses(401, 403))
def list_components(_: ViewerDep, engine: EngineDep, paging: PageDep) -> Any:
    """List components in resolution order, with their versions."""
    fleet = export_fleet_file(engine=engine)
    items = [
        {
            "name": name,
            "position": n,
            "versions": [v.version for v in fleet.versions if v.component == name],
        }
        for n, name in enumerate(fleet.components)
    ]
    return page(items, paging)


@router.get(
    "/{component}/versions",
    response_model=Page[VersionPublic],
    responses=problem_responses(401, 403, 404),
)
def list_versions(component: Component, _: ViewerDep, engine: EngineDep, paging: PageDep) -> Any:
    """List a component's versions in the registry."""
    fleet = export_fleet_file(engine=engine)
    if component not in fleet.components:
        raise NotFoundError(f"Unknown component: {component!r}")
    items = [version_json(v) for v in fleet.versions if v.component == component]
    return page(items, paging)


@router.post(
    "/{component}/versions",
    status_code=201,
    response_model=VersionPublic,
    responses=problem_responses(401, 403, 409, 422),
)
def publish_version(
    component: Component, body: VersionCreate, principal: OperatorDep, engine: EngineDep
) -> Any:
    """Publish a new version of a component (operator)."""
    data = body.model_dump(exclude_none=True)
    data["component"] = component
    data.setdefault("released_at", now_or_clock(None))
    stored = catalog.publish_version(entry(VersionEntry, data), actor=principal.name, engine=engine)
    return version_json(stored)
