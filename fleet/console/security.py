"""Sign-in cookies, CSRF checks and the headers every console response carries.

- The session cookie (`fleet_console`) holds a random secret; the server keeps
  only its hash (`fleet.services.sessions`). It is HttpOnly, SameSite=Strict,
  Secure when the request came over TLS, limited to `/console`, and expires
  with the session.
- Every form carries a CSRF token derived from the session secret; a POST
  without the right one is refused (403) before anything is done. The sign-in
  form itself is protected the same way with a short-lived pre-session cookie.
  A POST whose `Origin` is another site is refused too.
- Pages are sent with a strict Content-Security-Policy (scripts and styles
  only from the console itself, no inline script, no framing), `nosniff`,
  no referrer to other sites, and `no-store` caching (a POST keeps its
  `Origin` header: under `no-referrer` browsers send `Origin: null`).
"""

from __future__ import annotations

import hmac
import secrets
from datetime import UTC, datetime
from typing import Protocol

from fastapi import Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleet.services import sessions
from fleet.services.sessions import Session

__all__ = [
    "COOKIE",
    "CSP",
    "PREFIX",
    "SIGN_IN_COOKIE",
    "CsrfRefused",
    "SecurityHeaders",
    "SignInRequired",
    "check_csrf",
    "clear_session_cookie",
    "current_session",
    "new_sign_in_secret",
    "safe_next",
    "set_session_cookie",
    "set_sign_in_cookie",
]

PREFIX = "/console"
COOKIE = "fleet_console"
SIGN_IN_COOKIE = "fleet_console_signin"
SIGN_IN_SECONDS = 30 * 60

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)


class _Fields(Protocol):
    def get(self, name: str, default: str = "") -> str: ...


class SignInRequired(Exception):
    """No live session: a page redirects to the sign-in form."""


class CsrfRefused(Exception):
    """A POST without its CSRF token (or from another site)."""


def _console_path(path: str) -> bool:
    return path == "/" or path == PREFIX or path.startswith(PREFIX + "/")


class SecurityHeaders:
    """ASGI middleware: the console's security headers on every console response
    (the REST API's responses are left as they are)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _console_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith(PREFIX + "/static/")

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers.extend(h for h in _HEADERS if h[0] not in present)
                if not static and b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, sending)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_session_cookie(response: Response, request: Request, session: Session) -> None:
    seconds = max(1, int((session.expires_at - datetime.now(UTC)).total_seconds()))
    response.set_cookie(
        COOKIE,
        session.secret,
        max_age=seconds,
        path=PREFIX,
        secure=_secure(request),
        httponly=True,
        samesite="strict",
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        COOKIE, path=PREFIX, secure=_secure(request), httponly=True, samesite="strict"
    )


def new_sign_in_secret() -> str:
    return secrets.token_urlsafe(32)


def set_sign_in_cookie(response: Response, request: Request, secret: str) -> None:
    response.set_cookie(
        SIGN_IN_COOKIE,
        secret,
        max_age=SIGN_IN_SECONDS,
        path=PREFIX,
        secure=_secure(request),
        httponly=True,
        samesite="strict",
    )


def current_session(request: Request) -> Session | None:
    """The live session of the request's cookie (read from the database)."""
    from fleet.api.deps import engine_of

    secret = request.cookies.get(COOKIE)
    if not secret:
        return None
    return sessions.session_of(secret, engine=engine_of(request))


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        # Browsers send Origin on every cross-site POST; a missing one is a
        # same-site navigation or a non-browser client (who has no cookie to abuse).
        return origin is None
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


def check_csrf(request: Request, form: _Fields, secret: str | None) -> None:
    """Refuse the request unless its form's `csrf` matches the secret's token."""
    given = form.get("csrf", "")
    if secret is None or not given or not _same_origin(request):
        raise CsrfRefused("The form's CSRF token is missing or wrong: reload the page")
    if not hmac.compare_digest(given.encode(), sessions.csrf_token(secret).encode()):
        raise CsrfRefused("The form's CSRF token is missing or wrong: reload the page")


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path of this site, nothing else."""
    if (
        target
        and target.startswith(PREFIX + "/")
        and not target.startswith("//")
        and "\\" not in target
        and all(ch.isprintable() and not ch.isspace() for ch in target)
    ):
        return target
    return PREFIX + "/"
