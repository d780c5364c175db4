"""Dependencies that route handlers declare as `Annotated` aliases.

`ViewerDep`, `OperatorDep`, `ApproverDep` and `AdminDep` are the caller,
who must hold that grant; `PrincipalDep` is any authenticated caller
(every role reads).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from fastapi import Depends, FastAPI, Query, Request
from pydantic import BaseModel
from sqlalchemy import Engine

from fleet.api.auth import forbidden, principal_of
from fleet.core.errors import InputError
from fleet.core.text import find_unstorable
from fleet.db.engine import get_engine
from fleet.services.tokens import Principal, Role
from fleet.settings import Settings, get_settings

__all__ = [
    "AdminDep",
    "ApproverDep",
    "EngineDep",
    "OperatorDep",
    "PageDep",
    "Paging",
    "PrincipalDep",
    "ViewerDep",
    "engine_of",
    "require",
    "settings_of",
    "storable_body",
]


def settings_of(app: FastAPI) -> Settings:
    """The app's settings: those given to `create_app`, else `get_settings()`."""
    given: Settings | None = app.state.settings
    return given if given is not None else get_settings()


def engine_of(request: Request) -> Engine:
    return get_engine(settings_of(request.app).url)


# Cheap dependencies are `async` so that FastAPI does not hand each one to a
# worker thread, and the chain is short: FastAPI spends a few tens of
# microseconds on every dependency of every request.
async def _engine(request: Request) -> Engine:
    return engine_of(request)


EngineDep = Annotated[Engine, Depends(_engine)]


def _principal(request: Request) -> Principal:
    # Sync: the token lookup reads the database (in a worker thread). The
    # bearer scheme is declared in the OpenAPI document (`fleet.api.app`).
    principal = principal_of(request.headers.get("authorization"), engine_of(request))
    request.state.principal = principal
    return principal


def require(grant: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller, who must hold `grant`."""

    async def dependency(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
        if not principal.can(grant):
            raise forbidden(principal, grant)
        return principal

    dependency.__name__ = f"require_{grant.value}"
    return dependency


ViewerDep = Annotated[Principal, Depends(require(Role.VIEWER))]
PrincipalDep = ViewerDep
OperatorDep = Annotated[Principal, Depends(require(Role.OPERATOR))]
ApproverDep = Annotated[Principal, Depends(require(Role.APPROVER))]
AdminDep = Annotated[Principal, Depends(require(Role.ADMIN))]


T = TypeVar("T")


class Paging(BaseModel):
    limit: int
    offset: int

    def slice(self, items: list[T]) -> list[T]:
        return items[self.offset : self.offset + self.limit]


async def _paging(
    limit: Annotated[int, Query(ge=1, le=200, description="Items per page.")] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000, description="Items to skip.")] = 0,
) -> Paging:
    return Paging(limit=limit, offset=offset)


PageDep = Annotated[Paging, Depends(_paging)]


# A JSON escape of a UTF-16 surrogate (`"\ud800"`) or of NUL (`"\u0000"`), the
# only ways such a character gets into a string json.loads returns.
_SUSPECT = re.compile(rb"\\u(?:[dD][89a-fA-F]|0000)")


async def storable_body(request: Request) -> None:
    """Refuse a JSON body holding text no database can store, before any handler runs.

    A lone surrogate decodes fine from JSON and fails only when written; wherever
    it is in the body, the answer is a 422 naming it, and nothing is stored.
    """
    body = await request.body()
    if not _SUSPECT.search(body):
        return
    try:
        data = json.loads(body)
    except ValueError:
        return  # not JSON: the route's own parsing says so
    problems = [f"{at}: {why}" for at, why in find_unstorable(data, "body")]
    if problems:
        raise InputError("Invalid request: " + "; ".join(problems[:10]))
