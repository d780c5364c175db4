"""The application factory: one router per domain, errors in one handler, and an
OpenAPI document where every route has a description and an example."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi

from fleet import console
from fleet.api import errors
from fleet.api.auth import SECURITY_SCHEME
from fleet.api.deps import settings_of, storable_body
from fleet.api.models import Health
from fleet.api.routes import (
    advisories,
    approvals,
    audit,
    channels,
    compliance,
    components,
    history,
    instances,
    pins,
    plans,
    rollbacks,
    rollouts,
    tokens,
)
from fleet.settings import Settings

__all__ = ["ROUTERS", "create_app"]

ROUTERS = (
    components.router,
    channels.router,
    instances.router,
    pins.router,
    advisories.router,
    plans.router,
    rollouts.router,
    approvals.router,
    rollbacks.router,
    history.router,
    audit.router,
    compliance.router,
    tokens.router,
)

DESCRIPTION = """\
Fleet's REST API: what every customer instance runs and why, rollouts and
rollbacks through Prefect, approvals by authenticated principals, history
and the audit chain.

Every route but `/health` needs `Authorization: Bearer <token>` (tokens:
`fleet tokens create --name N --role R`). Roles: `viewer` reads;
`operator` also starts rollouts and rollbacks, manages pins, publishes
versions and imports advisories; `approver` also approves or rejects
waiting runs; `admin` may do everything, including channels, policies,
tokens and risk acceptances. Errors are `application/problem+json`
(RFC 9457). Lists take `limit` and `offset`.
"""


async def _health() -> Health:
    """Report that the API is up (no token needed)."""
    return Health()


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Handlers and dependencies that touch the database run in worker
    # threads. Python runs one thread at a time: beyond a few threads, more
    # of them only switch more (`Settings.api_threads`).
    limiter = anyio.to_thread.current_default_thread_limiter()
    limiter.total_tokens = settings_of(app).api_threads
    yield


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API; `settings` replaces `get_settings()` (tests, other databases)."""
    app = FastAPI(
        title="Fleet",
        version="1",
        description=DESCRIPTION,
        lifespan=_lifespan,
        dependencies=[Depends(storable_body)],
    )
    app.state.settings = settings
    errors.install(app)
    app.get("/health", response_model=Health, tags=["health"])(_health)
    for router in ROUTERS:
        app.include_router(router)
    console.install(app)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _document(app: FastAPI) -> dict[str, Any]:
    doc = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.update(errors.problem_schemas())
    components["securitySchemes"] = {"bearer": SECURITY_SCHEME}
    problem = {errors.PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, operations in doc.get("paths", {}).items():
        for operation in operations.values():
            if path != "/health":
                operation["security"] = [{"bearer": []}]
            if "requestBody" in operation:
                operation["responses"].setdefault(
                    "400", {"description": "The body is not JSON", "content": dict(problem)}
                )
            if "422" in operation.get("responses", {}):
                # Validation errors are problems too (FastAPI documents its own shape).
                operation["responses"]["422"] = {
                    "description": "Unprocessable Content",
                    "content": dict(problem),
                }
            for response in operation.get("responses", {}).values():
                for media in response.get("content", {}).values():
                    schema = media.get("schema")
                    if schema is not None and "example" not in media:
                        media["example"] = example_of(schema, schemas)
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return doc


def example_of(schema: dict[str, Any], schemas: dict[str, Any], depth: int = 0) -> Any:
    """An example value that meets `schema`, from the fields' own examples where given."""
    if depth > 8:
        return None
    if "$ref" in schema:
        return example_of(schemas[schema["$ref"].rsplit("/", 1)[-1]], schemas, depth + 1)
    if schema.get("examples"):
        return schema["examples"][0]
    if "example" in schema:
        return schema["example"]
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    if "default" in schema and schema["default"] is not None:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return example_of(options[0], schemas, depth + 1)
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: example_of(sub, schemas, depth + 1) for name, sub in props.items()}
    if kind == "array":
        return [example_of(schema.get("items", {}), schemas, depth + 1)]
    if kind == "string":
        if schema.get("format") == "date-time":
            return "2026-11-26T12:00:00Z"
        return "text"
    if kind == "integer":
        return max(1, int(schema.get("minimum", 1)))
    if kind == "number":
        return 1.0
    if kind == "boolean":
        return True
    return None
