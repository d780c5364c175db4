"""Pins: add, remove, expire, list (each change with its audit event)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete, insert, literal, select, update

from fleet.core.durations import check_instant, isoformat
from fleet.core.errors import ConflictError, InputError, NotFoundError
from fleet.core.identity import check_identity
from fleet.core.pins import Pin, PinScope
from fleet.core.text import check_text
from fleet.core.versions import parse_specifier
from fleet.db import fleet as repo
from fleet.db.audit import Entry, append_events
from fleet.services._common import now_or_clock, reading, writing

__all__ = ["StoredPin", "add_pin", "expire_pin", "list_pins", "pin_subject", "remove_pin"]


def pin_subject(scope: str, component: str, spec: str) -> str:
    """How the audit chain names a pin (the same as `fleet apply` does)."""
    return f"pin:{scope}/{component}{spec}"


@dataclass(frozen=True, slots=True)
class StoredPin:
    id: int
    pin: Pin

    def to_json(self) -> dict[str, Any]:
        p = self.pin
        return {
            "id": self.id,
            "scope": str(p.scope),
            "component": p.component,
            "spec": str(p.spec),
            "reason": p.reason,
            "author": p.author,
            "created_at": isoformat(p.created_at),
            "expires_at": None if p.expires_at is None else isoformat(p.expires_at),
        }


def _data(values: dict[str, Any]) -> dict[str, Any]:
    return {
        k: isoformat(v) if isinstance(v, datetime) else v for k, v in values.items() if k != "id"
    }


def _missing(session: Any, condition: Any) -> bool:
    """No row meets `condition` (its table is the one its columns name)."""
    return session.execute(select(literal(1)).where(condition).limit(1)).first() is None


def add_pin(
    scope: str,
    component: str,
    spec: str,
    *,
    reason: str,
    actor: str,
    expires_at: datetime | None = None,
    now: datetime | None = None,
    engine: Engine | None = None,
) -> StoredPin:
    """Add a pin authored by `actor`; every bad value is refused before anything is written."""
    now = now_or_clock(now)
    actor = check_identity(actor, kind="pin author")
    parsed_scope = PinScope.parse(scope)
    specifier = parse_specifier(spec)
    if not str(specifier):
        raise InputError(f"Invalid version specifier: {spec!r} (empty: it would pin nothing)")
    if not reason.strip():
        raise InputError(f"Invalid pin reason: {reason!r} (say why)")
    check_text(reason, what="pin reason")
    if expires_at is not None:
        check_instant(expires_at, what="pin expiry")
    if expires_at is not None and expires_at <= now:
        raise InputError(f"Invalid pin expiry: {isoformat(expires_at)!r} is not in the future")
    with writing(engine) as session:
        # Three indexed look-ups, not the whole fleet: this runs under the write lock.
        if _missing(session, repo.COMPONENT.c.name == component):
            raise InputError(f"Unknown component: {component!r}")
        if parsed_scope.kind == "channel" and _missing(
            session, repo.CHANNEL.c.name == parsed_scope.name
        ):
            raise InputError(f"Unknown channel in pin scope: {scope!r}")
        if parsed_scope.kind == "instance" and _missing(
            session,
            (repo.INSTANCE.c.name == parsed_scope.name) & repo.INSTANCE.c.retired_at.is_(None),
        ):
            raise InputError(f"Unknown instance in pin scope: {scope!r}")
        values: dict[str, Any] = {
            "scope": str(parsed_scope),
            "component": component,
            "spec": str(specifier),
            "reason": reason,
            "author": actor,
            "created_at": now,
            "expires_at": expires_at,
        }
        clash = session.execute(
            select(repo.PIN.c.id).where(
                (repo.PIN.c.scope == values["scope"])
                & (repo.PIN.c.component == component)
                & (repo.PIN.c.spec == values["spec"])
            )
        ).first()
        if clash is not None:
            raise ConflictError(
                f"Pin {values['scope']} {component}{values['spec']} exists already (id {clash.id})"
            )
        pin_id = session.execute(insert(repo.PIN).returning(repo.PIN.c.id), [values]).scalar_one()
        append_events(
            session,
            [
                Entry(
                    "pin.create",
                    pin_subject(values["scope"], component, values["spec"]),
                    {"after": _data(values), "id": pin_id},
                )
            ],
            actor=actor,
            at=now,
        )
        row = session.execute(select(repo.PIN).where(repo.PIN.c.id == pin_id)).one()
        return StoredPin(pin_id, repo.pin_of(row))


def _pin_row(session: Any, pin_id: int) -> Any:
    row = session.execute(select(repo.PIN).where(repo.PIN.c.id == pin_id)).first()
    if row is None:
        raise NotFoundError(f"Unknown pin: {pin_id!r}")
    return row


def remove_pin(
    pin_id: int, *, actor: str, now: datetime | None = None, engine: Engine | None = None
) -> None:
    now = now_or_clock(now)
    actor = check_identity(actor, kind="actor")
    with writing(engine) as session:
        row = _pin_row(session, pin_id)
        session.execute(delete(repo.PIN).where(repo.PIN.c.id == pin_id))
        append_events(
            session,
            [
                Entry(
                    "pin.delete",
                    pin_subject(row.scope, row.component, row.spec),
                    {"before": _data(dict(row._mapping)), "id": pin_id},
                )
            ],
            actor=actor,
            at=now,
        )


def expire_pin(
    pin_id: int, *, actor: str, now: datetime | None = None, engine: Engine | None = None
) -> None:
    """Let a pin lapse now (it stays listed, inactive, as the record of what held)."""
    now = now_or_clock(now)
    actor = check_identity(actor, kind="actor")
    with writing(engine) as session:
        row = _pin_row(session, pin_id)
        if row.expires_at is not None and row.expires_at <= now:
            raise ConflictError(f"Pin {pin_id} expired already at {isoformat(row.expires_at)}")
        session.execute(update(repo.PIN).where(repo.PIN.c.id == pin_id).values(expires_at=now))
        append_events(
            session,
            [
                Entry(
                    "pin.expire",
                    pin_subject(row.scope, row.component, row.spec),
                    {
                        "id": pin_id,
                        "expires_at": {
                            "before": None if row.expires_at is None else isoformat(row.expires_at),
                            "after": isoformat(now),
                        },
                    },
                )
            ],
            actor=actor,
            at=now,
        )


def list_pins(*, engine: Engine | None = None) -> list[StoredPin]:
    with reading(engine) as session:
        rows = session.execute(select(repo.PIN).order_by(repo.PIN.c.id)).all()
        return [StoredPin(r.id, repo.pin_of(r)) for r in rows]
