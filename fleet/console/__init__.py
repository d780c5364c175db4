"""Fleet's web console: the fleet at a glance, and approvals with a verified identity.

Served by the API process on the same port: `/` leads to `/console/`, the
REST API keeps its own paths. Pages are rendered on the server (Jinja2,
autoescaped), with a small vendored htmx for partial updates and SVG charts
drawn on the server; there is no build step.

    /console/                   the fleet matrix (instances x components)
    /console/instances/{name}   the plan and why, the timeline, the rollback form
    /console/approvals          runs waiting for approval; approve or reject as yourself
    /console/security           open advisories, deadlines, exposure over time
    /console/audit              the chain's state, events, export

People sign in with a Fleet API token, exchanged for a session cookie
(`fleet.console.security`); the role of the token decides what each page
offers, and every form's handler checks it again.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from fleet.console.pages import console_error, error_page, router
from fleet.console.security import PREFIX, CsrfRefused, SecurityHeaders, SignInRequired
from fleet.core.errors import FleetError

__all__ = ["install"]

STATIC = Path(__file__).resolve().parent / "static"


def _in_console(request: Request) -> bool:
    path = request.url.path
    return path == PREFIX or path.startswith(PREFIX + "/")


def _html_for_console(app: FastAPI, kind: type[Exception] | int) -> None:
    """Errors of console paths as pages; elsewhere the API's own handler answers."""
    previous = app.exception_handlers[kind]

    async def handler(request: Request, exc: Exception) -> Response:
        if not _in_console(request):
            result = previous(request, exc)
            if inspect.isawaitable(result):
                return await result
            return result
        if isinstance(exc, StarletteHTTPException):
            return error_page(request, exc.status_code, str(exc.detail))
        if isinstance(exc, RequestValidationError):
            wrong = "; ".join(
                f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
                for e in exc.errors()
            )
            return error_page(request, 422, f"Invalid request: {wrong}")
        return await console_error(request, exc)

    app.add_exception_handler(kind, handler)


def install(app: FastAPI) -> None:
    """Add the console to the API app (after the API's own error handlers)."""

    async def root() -> RedirectResponse:
        return RedirectResponse(PREFIX + "/", status_code=303)

    app.get("/", include_in_schema=False)(root)
    app.include_router(router)
    app.mount(PREFIX + "/static", StaticFiles(directory=STATIC), name="console-static")
    for kind in (FleetError, StarletteHTTPException, RequestValidationError):
        _html_for_console(app, kind)
    app.add_exception_handler(SignInRequired, console_error)
    app.add_exception_handler(CsrfRefused, console_error)
    app.add_middleware(SecurityHeaders)
