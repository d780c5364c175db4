"""Rendering: Jinja2 templates with autoescaping always on, and what every page
knows (who is signed in, what the role allows, the CSRF token, where the
Prefect UI is)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from functools import lru_cache
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, StreamingResponse
from jinja2 import Environment, PackageLoader, StrictUndefined

from fleet.console.security import PREFIX
from fleet.core.durations import isoformat
from fleet.services.sessions import Session
from fleet.services.tokens import Role

__all__ = [
    "HTMX",
    "HTMX_INTEGRITY",
    "prefect_ui_url",
    "render",
    "render_stream",
    "templates",
]

# The vendored htmx (static/, with its licence), pinned by version and hash: the
# page refuses a file that is not exactly this one (Subresource Integrity).
HTMX = "htmx-2.0.11.min.js"
HTMX_INTEGRITY = "sha384-2OatzQy1H+Zd/IIrjr1TcuDGqLXeHhbooAyJY1KdQMKnr4LZ22k31GBLdYKHmVjg"


def _when(moment: datetime | str | None) -> str:
    """`2026-11-26 08:00 UTC`."""
    if moment is None or moment == "":
        return ""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    return isoformat(moment)[:16].replace("T", " ") + " UTC"


def _query(base: str, **params: Any) -> str:
    kept = {k: v for k, v in params.items() if v not in (None, "", [], ())}
    return base + ("?" + urlencode(kept, doseq=True) if kept else "")


@lru_cache(maxsize=1)
def templates() -> Environment:
    env = Environment(
        loader=PackageLoader("fleet.console", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.globals["query"] = _query
    env.globals["PREFIX"] = PREFIX
    env.globals["HTMX"] = HTMX
    env.globals["HTMX_INTEGRITY"] = HTMX_INTEGRITY
    return env


def prefect_ui_url() -> str | None:
    """The Prefect UI's base URL (Prefect's own setting), for links to runs."""
    from prefect.settings import get_current_settings

    url = get_current_settings().ui_url
    return str(url).rstrip("/") if url else None


def _context(request: Request, session: Session | None, nav: str) -> dict[str, Any]:
    principal = None if session is None else session.principal
    return {
        "request_path": request.url.path,
        "session": session,
        "principal": principal,
        "csrf": "" if session is None else session.csrf,
        "can": {
            "operate": principal is not None and principal.can(Role.OPERATOR),
            "approve": principal is not None and principal.can(Role.APPROVER),
            "admin": principal is not None and principal.can(Role.ADMIN),
        },
        "nav": nav,
        "prefect_ui": prefect_ui_url(),
    }


def render(
    request: Request,
    template: str,
    *,
    session: Session | None,
    status: int = 200,
    nav: str = "",
    **context: Any,
) -> HTMLResponse:
    page = templates().get_template(template)
    html = page.render(**_context(request, session, nav), **context)
    return HTMLResponse(html, status_code=status)


def _chunks(parts: Iterator[str], size: int = 32 * 1024) -> Iterator[bytes]:
    buffer: list[str] = []
    held = 0
    for part in parts:
        buffer.append(part)
        held += len(part)
        if held >= size:
            yield "".join(buffer).encode()
            buffer, held = [], 0
    if buffer:
        yield "".join(buffer).encode()


def render_stream(
    request: Request,
    template: str,
    *,
    session: Session | None,
    nav: str = "",
    **context: Any,
) -> StreamingResponse:
    """A long page sent as it is rendered: the browser paints its top while the
    server writes the rest (everything it shows is worked out before the first byte)."""
    page = templates().get_template(template)
    parts = page.generate(**_context(request, session, nav), **context)
    return StreamingResponse(_chunks(parts), media_type="text/html; charset=utf-8")
