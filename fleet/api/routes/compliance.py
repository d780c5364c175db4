"""Compliance: instances that advisories affect, with their deadlines."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from fleet.api.deps import EngineDep, PageDep, ViewerDep
from fleet.api.errors import problem_responses
from fleet.api.models import ComplianceItem, Page, SeverityName
from fleet.api.routes._convert import page
from fleet.services import compliance

router = APIRouter(prefix="/compliance", tags=["compliance"])


@router.get("", response_model=Page[ComplianceItem], responses=problem_responses(401, 403, 422))
def affected(
    _: ViewerDep,
    engine: EngineDep,
    paging: PageDep,
    severity: Annotated[SeverityName | None, Query(description="Only this severity.")] = None,
    overdue: Annotated[bool, Query(description="Only past their deadline.")] = False,
) -> Any:
    """List affected instances per advisory, soonest deadline first."""
    rows = compliance.exposures(severity=severity, overdue_only=overdue, engine=engine)
    return page([r.to_json() for r in rows], paging)
