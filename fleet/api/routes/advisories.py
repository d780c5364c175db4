"""Security advisories: list, import OSV records (operator), accept a risk (admin)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from fleet.api.deps import AdminDep, EngineDep, OperatorDep, PageDep, ViewerDep
from fleet.api.errors import problem_responses
from fleet.api.models import (
    AdvisoryPublic,
    ImportPublic,
    OsvImport,
    Page,
    RiskAcceptanceCreate,
    RiskAcceptancePublic,
)
from fleet.api.routes._convert import page
from fleet.core.advisories import Severity
from fleet.services import advisories
from fleet.services.fleet import export_fleet_file

router = APIRouter(prefix="/advisories", tags=["advisories"])

AdvisoryId = Annotated[str, Path(max_length=200, examples=["FLEET-2026-0001"])]


@router.get("", response_model=Page[AdvisoryPublic], responses=problem_responses(401, 403))
def list_advisories(_: ViewerDep, engine: EngineDep, paging: PageDep) -> Any:
    """List advisories with their affected ranges (OSV form) and versions."""
    return page([a.to_data() for a in export_fleet_file(engine=engine).advisories], paging)


@router.post("/osv", response_model=ImportPublic, responses=problem_responses(401, 403, 422))
def import_osv(body: OsvImport, principal: OperatorDep, engine: EngineDep) -> Any:
    """Import OSV records; all are stored or none (operator)."""
    result = advisories.import_osv(
        body.records,
        body.component_map,
        actor=principal.name,
        default_severity=None if body.default_severity is None else Severity(body.default_severity),
        engine=engine,
    )
    return {
        "created": list(result.created),
        "updated": list(result.updated),
        "unchanged": list(result.unchanged),
    }


@router.post(
    "/{advisory_id}/risk-acceptances",
    status_code=201,
    response_model=RiskAcceptancePublic,
    responses=problem_responses(401, 403, 404, 422),
)
def accept_risk(
    advisory_id: AdvisoryId, body: RiskAcceptanceCreate, principal: AdminDep, engine: EngineDep
) -> Any:
    """Accept an advisory's risk on one instance until a time, suspending enforcement (admin)."""
    advisories.accept_risk(
        body.instance,
        advisory_id,
        reason=body.reason,
        until=body.until,
        actor=principal.name,
        engine=engine,
    )
    return {
        "instance": body.instance,
        "advisory": advisory_id,
        "by": principal.name,
        "reason": body.reason,
        "until": body.until,
    }
