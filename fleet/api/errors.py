"""Errors as `application/problem+json` (RFC 9457), mapped to HTTP in one place.

Fleet's error tree decides the status: input errors 422 (the message quotes
the bad value), unknown objects 404, conflicts 409, refusals such as four
eyes 403, a broken audit chain 409, plan and rollback errors 422, Prefect's
server out of reach 503. Request
validation errors name each bad field and the value given.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from fleet.core.errors import (
    AuditChainError,
    ConflictError,
    FleetError,
    InputError,
    NotFoundError,
    PermissionDenied,
    PlanError,
    RollbackError,
)
from fleet.services.runs import RunsUnavailable

__all__ = [
    "PROBLEM",
    "Problem",
    "install",
    "problem",
    "problem_responses",
    "problem_schemas",
    "status_of",
]

PROBLEM = "application/problem+json"


class InvalidParam(BaseModel):
    name: str = Field(description="Where the bad value is, e.g. body.spec or query.limit.")
    reason: str
    value: Any = Field(default=None, description="The value given.")


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str = Field(default="about:blank", examples=["about:blank"])
    title: str = Field(examples=["Unprocessable Content"])
    status: int = Field(examples=[422])
    detail: str = Field(examples=["Invalid version specifier: '>>2' (not PEP 440)"])
    instance: str | None = Field(default=None, examples=["/pins"])
    invalid_params: list[InvalidParam] | None = Field(
        default=None, alias="invalid-params", serialization_alias="invalid-params"
    )


_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    422: "Unprocessable Content",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

# Most specific first.
_STATUS: tuple[tuple[type[FleetError], int], ...] = (
    (InputError, 422),
    (NotFoundError, 404),
    (ConflictError, 409),
    (PermissionDenied, 403),
    (AuditChainError, 409),
    (PlanError, 422),
    (RollbackError, 422),
    (RunsUnavailable, 503),
)


def status_of(exc: FleetError) -> int:
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 500


def _text(value: str, limit: int = 1000) -> str:
    """Text a response can carry: a lone surrogate escaped, a huge value cut."""
    text = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def problem(
    status: int,
    detail: str,
    request: Request | None = None,
    *,
    invalid: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": _text(detail),
    }
    if request is not None:
        body["instance"] = request.url.path
    if invalid is not None:
        body["invalid-params"] = invalid
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(p) for p in loc)


def _jsonable(value: Any, depth: int = 0) -> Any:
    """The given value as JSON a response can carry (cut short: it may be huge)."""
    if isinstance(value, str):
        return _text(value, 200)
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if value is None or isinstance(value, int | float | bool):
        return value
    if depth > 3:
        return "..."
    if isinstance(value, list | tuple):
        return [_jsonable(v, depth + 1) for v in value[:20]]
    if isinstance(value, dict):
        items = list(value.items())[:20]
        return {_text(str(k), 200): _jsonable(v, depth + 1) for k, v in items}
    return _text(repr(value), 200)


async def _fleet_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FleetError)
    return problem(status_of(exc), str(exc), request)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    invalid = [
        {
            "name": _text(_location(e.get("loc", ())), 200),
            "reason": _text(str(e.get("msg", "")), 400),
            "value": _jsonable(e.get("input")),
        }
        for e in exc.errors()
    ]
    detail = (
        "; ".join(f"{p['name']}: {p['reason']} (given {p['value']!r})" for p in invalid)
        or "invalid request"
    )
    return problem(422, f"Invalid request: {detail}", request, invalid=invalid)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return problem(exc.status_code, str(exc.detail), request, headers=exc.headers)


def problem_schemas() -> dict[str, Any]:
    """The OpenAPI component schemas of `Problem` (added to the document by the app)."""
    schema = Problem.model_json_schema(
        mode="serialization", ref_template="#/components/schemas/{model}"
    )
    defs = schema.pop("$defs", {})
    return {"Problem": schema, **defs}


def install(app: FastAPI) -> None:
    """The one place where errors become HTTP responses."""
    app.add_exception_handler(FleetError, _fleet_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for these statuses, as problem+json."""
    return {
        status: {
            "description": _TITLES.get(status, "Error"),
            "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }
