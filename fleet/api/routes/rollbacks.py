"""Rollbacks: start the rollback flow through its Prefect deployment."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from fleet.api.deps import EngineDep, OperatorDep
from fleet.api.errors import problem_responses
from fleet.api.models import RollbackCreate, RunPublic
from fleet.core.durations import isoformat
from fleet.core.errors import InputError, PermissionDenied
from fleet.core.rollback import RollbackTarget
from fleet.services import plans, runs
from fleet.services.tokens import Role

router = APIRouter(prefix="/rollbacks", tags=["rollbacks"])


@router.post(
    "",
    status_code=202,
    response_model=RunPublic,
    responses=problem_responses(401, 403, 404, 422),
)
def start_rollback(body: RollbackCreate, principal: OperatorDep, engine: EngineDep) -> Any:
    """Start a rollback of instances; a risk acceptance in it needs an admin (operator)."""
    RollbackTarget.parse(body.target)
    if not body.reason.strip():
        raise InputError(f"Invalid rollback reason: {body.reason!r} (say why)")
    plans.check_selection(instances=body.instances, engine=engine)
    parameters: dict[str, Any] = {
        "instances": list(dict.fromkeys(body.instances)),
        "target": body.target,
        "reason": body.reason,
        "requested_by": principal.name,
    }
    if body.risk_acceptance is not None:
        if not principal.can(Role.ADMIN):
            raise PermissionDenied(
                f"A risk acceptance needs the admin role; {principal.name!r} is "
                f"{principal.role.value!r}"
            )
        parameters["risk_acceptance"] = {
            "by": principal.name,
            "reason": body.risk_acceptance.reason,
            "until": isoformat(body.risk_acceptance.until),
        }
    return runs.start_run(runs.ROLLBACK, parameters)
