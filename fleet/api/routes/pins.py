"""Pins at global, channel and instance scope; operators add, remove and expire them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from fleet.api.deps import EngineDep, OperatorDep, PageDep, ViewerDep
from fleet.api.errors import problem_responses
from fleet.api.models import Message, Page, PinCreate, PinPublic
from fleet.api.routes._convert import page
from fleet.services import pins

router = APIRouter(prefix="/pins", tags=["pins"])

PinId = Annotated[int, Path(ge=1, le=2**31 - 1, examples=[3])]


@router.get("", response_model=Page[PinPublic], responses=problem_responses(401, 403))
def list_pins(_: ViewerDep, engine: EngineDep, paging: PageDep) -> Any:
    """List every pin, active or expired, by id."""
    return page([p.to_json() for p in pins.list_pins(engine=engine)], paging)


@router.post(
    "", status_code=201, response_model=PinPublic, responses=problem_responses(401, 403, 409, 422)
)
def add_pin(body: PinCreate, principal: OperatorDep, engine: EngineDep) -> Any:
    """Add a pin authored by the caller (operator)."""
    stored = pins.add_pin(
        body.scope,
        body.component,
        body.spec,
        reason=body.reason,
        actor=principal.name,
        expires_at=body.expires_at,
        engine=engine,
    )
    return stored.to_json()


@router.delete("/{pin_id}", response_model=Message, responses=problem_responses(401, 403, 404))
def remove_pin(pin_id: PinId, principal: OperatorDep, engine: EngineDep) -> Any:
    """Remove a pin (the audit chain keeps it) (operator)."""
    pins.remove_pin(pin_id, actor=principal.name, engine=engine)
    return {"detail": f"pin {pin_id} removed"}


@router.post(
    "/{pin_id}/expire", response_model=Message, responses=problem_responses(401, 403, 404, 409)
)
def expire_pin(pin_id: PinId, principal: OperatorDep, engine: EngineDep) -> Any:
    """Let a pin lapse now; it stays listed as the record of what held (operator)."""
    pins.expire_pin(pin_id, actor=principal.name, engine=engine)
    return {"detail": f"pin {pin_id} expired"}
