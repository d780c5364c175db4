"""API tokens (admin): list, create (the secret is returned once), revoke."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from fleet.api.deps import AdminDep, EngineDep, PageDep
from fleet.api.errors import problem_responses
from fleet.api.models import Page, TokenCreate, TokenCreated, TokenPublic
from fleet.api.routes._convert import page
from fleet.services import tokens

router = APIRouter(prefix="/tokens", tags=["tokens"])

Name = Annotated[str, Path(max_length=100, examples=["ci-pipeline"])]


@router.get("", response_model=Page[TokenPublic], responses=problem_responses(401, 403))
def list_tokens(_: AdminDep, engine: EngineDep, paging: PageDep) -> Any:
    """List tokens (names, roles, revocations; never secrets) (admin)."""
    return page([t.to_json() for t in tokens.list_tokens(engine=engine)], paging)


@router.post(
    "",
    status_code=201,
    response_model=TokenCreated,
    responses=problem_responses(401, 403, 409, 422),
)
def create_token(body: TokenCreate, principal: AdminDep, engine: EngineDep) -> Any:
    """Create a token; its secret is in this answer only (admin)."""
    stored, secret = tokens.create_token(body.name, body.role, actor=principal.name, engine=engine)
    return {**stored.to_json(), "token": secret}


@router.delete(
    "/{name}", response_model=TokenPublic, responses=problem_responses(401, 403, 404, 409)
)
def revoke_token(name: Name, principal: AdminDep, engine: EngineDep) -> Any:
    """Revoke a token at once; its name is never reused (admin)."""
    return tokens.revoke_token(name, actor=principal.name, engine=engine).to_json()
