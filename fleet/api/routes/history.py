"""History per instance: manifest revisions and deployment records."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from fleet.api.deps import EngineDep, PageDep, ViewerDep
from fleet.api.errors import problem_responses
from fleet.api.models import DeploymentPublic, Page, RevisionPublic
from fleet.api.routes._convert import page
from fleet.services import deployments, manifests

router = APIRouter(prefix="/history", tags=["history"])

Instance = Annotated[str, Path(max_length=63, examples=["acme-prod"])]


@router.get(
    "/{instance}", response_model=Page[RevisionPublic], responses=problem_responses(401, 403, 404)
)
def revisions(instance: Instance, _: ViewerDep, engine: EngineDep, paging: PageDep) -> Any:
    """List an instance's manifest revisions, oldest first, with from -> to and why."""
    return page([h.to_json() for h in manifests.history(instance, engine=engine)], paging)


@router.get(
    "/{instance}/deployments",
    response_model=Page[DeploymentPublic],
    responses=problem_responses(401, 403, 404),
)
def deployment_records(instance: Instance, _: ViewerDep, engine: EngineDep, paging: PageDep) -> Any:
    """List an instance's deployment records, oldest first, with each run's approvals."""
    manifests.history(instance, engine=engine)  # 404 for an unknown instance
    return page([d.to_json() for d in deployments.deployments_of(instance, engine=engine)], paging)
