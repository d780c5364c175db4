"""Dependencies that route handlers declare as `Annotated` aliases.

`ViewerDep`, `OperatorDep`, `ApproverDep` and `AdminDep` are the caller,
who must hold that grant; `PrincipalDep` is any authenticated caller
(every role reads).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel
from sqlalchemy import Engine

from fleet.api.auth import bearer, forbidden, principal_of
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
    "SettingsDep",
    "ViewerDep",
    "require",
]


SettingsDep = Annotated[Settings, Depends(get_settings)]


# Cheap dependencies are `async` so that FastAPI does not hand each one to a
# worker thread; those that touch the database stay sync (off the event loop).
async def _engine(settings: SettingsDep) -> Engine:
    return get_engine(settings.url)


EngineDep = Annotated[Engine, Depends(_engine)]


def _principal(
    request: Request,
    engine: EngineDep,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    principal = principal_of(request.headers.get("authorization"), engine)
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
