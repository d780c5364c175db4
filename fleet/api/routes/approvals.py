"""Approvals: runs waiting for approval with their plan; approve or reject as yourself,
here or in the Prefect UI's form with a one-time code."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from fleet.api.deps import ApproverDep, EngineDep, PageDep, ViewerDep
from fleet.api.errors import problem_responses
from fleet.api.models import ApprovalCodePublic, DecisionBody, DecisionPublic, Page, WaitingRun
from fleet.services import codes, runs

router = APIRouter(prefix="/approvals", tags=["approvals"])

RunId = Annotated[str, Path(max_length=64, examples=["0f8b1c7e-3d2a-4c55-9d43-6f7a2b1e9c10"])]


@router.get("", response_model=Page[WaitingRun], responses=problem_responses(401, 403))
def waiting(_: ViewerDep, engine: EngineDep, paging: PageDep) -> Any:
    """List runs waiting for approval, each with its plan and the approvals so far."""
    items, total = runs.waiting_runs(limit=paging.limit, offset=paging.offset, engine=engine)
    return {"items": items, "total": total, "limit": paging.limit, "offset": paging.offset}


@router.post(
    "/{flow_run_id}",
    response_model=DecisionPublic,
    responses=problem_responses(401, 403, 404, 409, 422),
)
def decide(
    flow_run_id: RunId, body: DecisionBody, principal: ApproverDep, engine: EngineDep
) -> Any:
    """Approve or reject a waiting run as the caller (verified); never your own (approver)."""
    recorded = runs.decide(
        flow_run_id,
        approver=principal.name,
        decision=body.decision,
        comment=body.comment,
        instances=body.instances,
        engine=engine,
    )
    return {
        "flow_run_id": flow_run_id,
        "approver": principal.name,
        "decision": body.decision,
        "instances": [a.instance for a in recorded],
        "verified": True,
        "approvals": [a.to_json() for a in recorded],
    }


@router.post(
    "/{flow_run_id}/code",
    response_model=ApprovalCodePublic,
    status_code=201,
    responses=problem_responses(401, 403, 404, 409, 422),
)
def code(flow_run_id: RunId, principal: ApproverDep, engine: EngineDep) -> Any:
    """A one-time code to decide this run in the Prefect UI's form as yourself (approver)."""
    return codes.issue_code(flow_run_id, principal=principal, engine=engine).to_json()
