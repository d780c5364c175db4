"""Rollbacks: start the rollback flow through its Prefect deployment."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from fleet.api.deps import EngineDep, OperatorDep
from fleet.api.errors import problem_responses
from fleet.api.models import RollbackCreate, RunPublic
from fleet.services import rollbacks

router = APIRouter(prefix="/rollbacks", tags=["rollbacks"])


@router.post(
    "",
    status_code=202,
    response_model=RunPublic,
    responses=problem_responses(401, 403, 404, 422),
)
def start_rollback(body: RollbackCreate, principal: OperatorDep, engine: EngineDep) -> Any:
    """Start a rollback of instances; a risk acceptance in it needs an admin (operator)."""
    risk = body.risk_acceptance
    return rollbacks.start_rollback(
        body.instances,
        target=body.target,
        reason=body.reason,
        principal=principal,
        risk_reason=None if risk is None else risk.reason,
        risk_until=None if risk is None else risk.until,
        engine=engine,
    )
