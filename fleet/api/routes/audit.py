"""The audit chain: query, export as JSON lines, verify."""

from __future__ import annotations

import json
from collections.abc import Iterator
from itertools import islice
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import PlainTextResponse, StreamingResponse

from fleet.api.deps import EngineDep, PageDep, ViewerDep
from fleet.api.errors import problem_responses
from fleet.api.models import (
    AuditEventPublic,
    AuditReportPublic,
    Instant,
    Page,
    VerdictPublic,
    WitnessReportPublic,
)
from fleet.core.durations import isoformat
from fleet.services import audit
from fleet.services.reports import audit_report, prefect_ui_url
from fleet.services.witnesses import verify_witnesses

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


Instance = Annotated[str, Path(max_length=63, examples=["acme-prod"])]
At = Annotated[
    Instant,
    Query(
        description="The moment asked about (ISO 8601 with a zone).",
        examples=["2026-11-30T12:00:00Z"],
    ),
]


@router.get(
    "/reports/{instance}",
    response_model=AuditReportPublic,
    responses=problem_responses(401, 403, 404, 422),
)
def report(instance: Instance, at: At, _: ViewerDep, engine: EngineDep) -> Any:
    """What ran on an instance at a time: revision, runs, approvals, advisories, audit events."""
    return audit_report(instance, at=at, prefect_ui=prefect_ui_url(), engine=engine).to_json()


@router.get(
    "/reports/{instance}/markdown",
    response_class=PlainTextResponse,
    responses={
        200: {
            "description": "The report as a Markdown document an auditor can file.",
            "content": {"text/markdown": {"schema": {"type": "string"}}},
        },
        **problem_responses(401, 403, 404, 422),
    },
)
def report_markdown(
    instance: Instance, at: At, _: ViewerDep, engine: EngineDep
) -> PlainTextResponse:
    """The audit report of an instance at a time, as Markdown to file."""
    found = audit_report(instance, at=at, prefect_ui=prefect_ui_url(), engine=engine)
    return PlainTextResponse(found.to_markdown(), media_type="text/markdown")


@router.get("/witnesses", response_model=WitnessReportPublic, responses=problem_responses(401, 403))
def witnesses(_: ViewerDep, engine: EngineDep) -> Any:
    """Verify the chain against every published head (`fleet audit verify --witnesses`)."""
    found = verify_witnesses(engine=engine)
    v = found.verdict
    return {
        "ok": found.ok,
        "verdict": {
            "ok": v.ok,
            "checked": v.checked,
            "broken_seq": v.broken_seq,
            "reason": v.reason,
        },
        "checks": [
            {
                "status": c.status.value,
                "seq": c.published.head.seq,
                "hash": c.published.head.hash,
                "published_at": isoformat(c.published.head.at),
                "where": c.published.where,
                "flow_run_id": c.published.flow_run_id,
                "message": str(c),
            }
            for c in found.checks
        ],
        "notes": list(found.notes),
    }
