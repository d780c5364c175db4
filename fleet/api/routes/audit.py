"""The audit chain: query, export as JSON lines, verify."""

from __future__ import annotations

import json
from collections.abc import Iterator
from itertools import islice
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from fleet.api.deps import EngineDep, PageDep, ViewerDep
from fleet.api.errors import problem_responses
from fleet.api.models import AuditEventPublic, Instant, Page, VerdictPublic
from fleet.services import audit

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get(
    "/events", response_model=Page[AuditEventPublic], responses=problem_responses(401, 403, 422)
)
def events(
    _: ViewerDep,
    engine: EngineDep,
    paging: PageDep,
    subject: Annotated[
        str | None,
        Query(
            max_length=300,
            description="A subject, or a prefix ending in *.",
            examples=["instance:acme-prod"],
        ),
    ] = None,
    since: Annotated[Instant | None, Query(description="Events at or after.")] = None,
) -> Any:
    """Query audit events in chain order (`total` is not counted)."""
    stream = audit.events(subject=subject, since=since, engine=engine)
    chosen = islice(stream, paging.offset, paging.offset + paging.limit)
    items = [audit.event_json(e) for e in chosen]
    return {"items": items, "total": None, "limit": paging.limit, "offset": paging.offset}


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Every event as one JSON line, in chain order.",
            "content": {"application/jsonl": {"schema": {"type": "string"}}},
        },
        **problem_responses(401, 403),
    },
)
def export(_: ViewerDep, engine: EngineDep) -> StreamingResponse:
    """Export the whole chain as JSON lines (what `fleet audit export` writes)."""

    def lines() -> Iterator[str]:
        for event in audit.events(engine=engine):
            yield json.dumps(audit.event_json(event), ensure_ascii=False, sort_keys=True) + "\n"

    return StreamingResponse(lines(), media_type="application/jsonl")


@router.get("/verify", response_model=VerdictPublic, responses=problem_responses(401, 403))
def verify(_: ViewerDep, engine: EngineDep) -> Any:
    """Recompute the chain; a broken one names its first broken link."""
    verdict = audit.verify(engine=engine)
    return {
        "ok": verdict.ok,
        "checked": verdict.checked,
        "broken_seq": verdict.broken_seq,
        "reason": verdict.reason,
    }
