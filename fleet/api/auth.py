"""Bearer-token authentication.

Every route but the health check needs `Authorization: Bearer <token>`:
a missing, malformed, unknown or revoked token gets 401; a valid token
whose role lacks the route's grant gets 403 (roles and grants:
`fleet.services.tokens`; the check: `fleet.api.deps.require`).
"""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException
from sqlalchemy import Engine

from fleet.services import tokens
from fleet.services.tokens import Principal, Role

__all__ = ["SECURITY_SCHEME", "forbidden", "principal_of"]

# The scheme as the OpenAPI document declares it (`fleet.api.app`); the
# header itself is parsed below so that every failure is the same 401 with a
# challenge.
SECURITY_SCHEME: dict[str, Any] = {
    "type": "http",
    "scheme": "bearer",
    "description": "An API token from `fleet tokens create`.",
}
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="fleet"'}


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers=_CHALLENGE)


def principal_of(header: str | None, engine: Engine) -> Principal:
    """The principal of an `Authorization` header value, or a 401."""
    if header is None:
        raise _unauthorized("Missing Authorization header (expected 'Bearer <token>')")
    scheme, _sep, secret = header.partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret or " " in secret:
        raise _unauthorized("Malformed Authorization header (expected 'Bearer <token>')")
    principal = tokens.authenticate(secret, engine=engine)
    if principal is None:
        raise _unauthorized("Invalid or revoked token")
    return principal


def forbidden(principal: Principal, grant: Role) -> HTTPException:
    return HTTPException(
        status_code=403,
        detail=f"Role {principal.role.value!r} of {principal.name!r} does not grant "
        f"{grant.value!r}",
    )
