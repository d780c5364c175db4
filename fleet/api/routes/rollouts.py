"""Rollouts: start compile-and-deploy through its Prefect deployment; list with live state."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from fleet.api.deps import EngineDep, OperatorDep, PageDep, ViewerDep
from fleet.api.errors import problem_responses
from fleet.api.models import DeploymentPublic, Page, RolloutCreate, RunPublic
from fleet.api.routes._convert import page
from fleet.core.durations import isoformat
from fleet.core.rollout import Amount
from fleet.services import deployments, plans, runs

router = APIRouter(prefix="/rollouts", tags=["rollouts"])

RunId = Annotated[str, Path(max_length=64, examples=["0f8b1c7e-3d2a-4c55-9d43-6f7a2b1e9c10"])]


@router.post(
    "",
    status_code=202,
    response_model=RunPublic,
    responses=problem_responses(401, 403, 404, 422),
)
def start_rollout(body: RolloutCreate, principal: OperatorDep, engine: EngineDep) -> Any:
    """Start compile-and-deploy for a selection; the caller is its requester (operator)."""
    strategy = body.strategy.model_dump(exclude_none=True)
    for key in ("canary", "batch", "halt_after"):
        if key in strategy:
            Amount.parse(strategy[key])
    plans.check_selection(
        instances=body.selector.instances, channels=body.selector.channels, engine=engine
    )
    parameters: dict[str, Any] = {
        "selector": body.selector.model_dump(),
        "dry_run": body.dry_run,
        "strategy": strategy,
        "requested_by": principal.name,
    }
    if body.at is not None:
        parameters["at"] = isoformat(body.at)
    return runs.start_run(runs.COMPILE_AND_DEPLOY, parameters)


@router.get("", response_model=Page[RunPublic], responses=problem_responses(401, 403))
def list_rollouts(_: ViewerDep, paging: PageDep) -> Any:
    """List compile-and-deploy runs, newest first, with their live Prefect state."""
    items, total = runs.list_runs(
        (runs.COMPILE_AND_DEPLOY,), limit=paging.limit, offset=paging.offset
    )
    return {"items": items, "total": total, "limit": paging.limit, "offset": paging.offset}


@router.get(
    "/{flow_run_id}", response_model=RunPublic, responses=problem_responses(401, 403, 404, 422)
)
def read_rollout(flow_run_id: RunId, _: ViewerDep) -> Any:
    """Read one compile-and-deploy run with its live state."""
    return runs.read_run(flow_run_id, (runs.COMPILE_AND_DEPLOY,))


@router.get(
    "/{flow_run_id}/deployments",
    response_model=Page[DeploymentPublic],
    responses=problem_responses(401, 403, 422),
)
def run_deployments(
    flow_run_id: RunId,
    _: ViewerDep,
    engine: EngineDep,
    paging: PageDep,
    instance: Annotated[
        str | None, Query(max_length=63, description="Only this instance's deploy.")
    ] = None,
) -> Any:
    """List what a run (compile-and-deploy, patch-rollout or rollback) deployed, by
    instance, with outcome, error and approvals: one instance's deploy in a run of
    thousands is `?instance=NAME`."""
    records = deployments.deployments_of_run(flow_run_id, instance=instance, engine=engine)
    return page([d.to_json() for d in records], paging)
