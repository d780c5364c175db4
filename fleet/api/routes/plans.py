"""Plan previews: what each instance would get, and why; nothing is stored."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from fleet.api.deps import EngineDep, ViewerDep
from fleet.api.errors import problem_responses
from fleet.api.models import Instant, PlanPublic
from fleet.core.errors import InputError
from fleet.services import plans

router = APIRouter(prefix="/plans", tags=["plans"])


def _labels(texts: list[str]) -> dict[str, str]:
    out = {}
    for text in texts:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise InputError(f"Invalid label: {text!r} (expected KEY=VALUE)")
        out[key] = value
    return out


@router.get(
    "/preview",
    response_model=PlanPublic,
    responses=problem_responses(401, 403, 422),
)
def preview(
    _: ViewerDep,
    engine: EngineDep,
    instance: Annotated[
        list[str], Query(max_length=1000, description="Only these instances.")
    ] = [],  # noqa: B006 (FastAPI copies defaults)
    channel: Annotated[list[str], Query(max_length=100, description="Only these channels.")] = [],  # noqa: B006
    label: Annotated[
        list[str], Query(max_length=50, description="KEY=VALUE labels every instance has.")
    ] = [],  # noqa: B006
    at: Annotated[Instant | None, Query(description="Plan as of this time.")] = None,
) -> Any:
    """Preview the plan; the JSON is exactly `fleet plan --json`."""
    plan = plans.preview(
        now=at, instances=instance, channels=channel, labels=_labels(label), engine=engine
    )
    return JSONResponse(plan.to_json())
