"""Pins through the services: add, remove, expire; bad input writes nothing."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from fleet.core.errors import ConflictError, InputError, InvalidSpecifier, NotFoundError
from fleet.core.fleetfile import parse_fleet_text
from fleet.services import audit
from fleet.services.fleet import apply_fleet_file, load_state
from fleet.services.pins import add_pin, expire_pin, list_pins, remove_pin
from tests.db.support import snapshot
from tests.factories import NOW

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fleet.yaml"


@pytest.fixture
def fleet(engine: Engine) -> Engine:
    apply_fleet_file(parse_fleet_text(EXAMPLE.read_text()), actor="ops", now=NOW, engine=engine)
    return engine


def test_add_expire_remove(fleet: Engine) -> None:
    stored = add_pin(
        "channel:stable",
        "api",
        ">=2.4, <3",
        reason="hold 3.x",
        actor="alice",
        now=NOW,
        engine=fleet,
    )
    assert str(stored.pin.spec) == "<3,>=2.4" and stored.pin.author == "alice"
    assert stored.id in [p.id for p in list_pins(engine=fleet)]
    assert stored.pin in load_state(engine=fleet).pins

    expire_pin(stored.id, actor="bob", now=NOW + timedelta(hours=1), engine=fleet)
    [again] = [p for p in list_pins(engine=fleet) if p.id == stored.id]
    assert again.pin.expires_at == NOW + timedelta(hours=1)
    assert not again.pin.is_active(NOW + timedelta(hours=2))

    remove_pin(stored.id, actor="carol", now=NOW + timedelta(hours=2), engine=fleet)
    assert stored.id not in [p.id for p in list_pins(engine=fleet)]
    events = list(audit.events(subject="pin:channel:stable/api<3,>=2.4", engine=fleet))
    assert [(e.action, e.actor) for e in events] == [
        ("pin.create", "alice"),
        ("pin.expire", "bob"),
        ("pin.delete", "carol"),
    ]
    assert events[-1].details["before"]["reason"] == "hold 3.x"
    assert audit.verify(engine=fleet).ok


@pytest.mark.parametrize(
    ("scope", "component", "spec", "error", "message"),
    [
        ("global", "api", ">=x", InvalidSpecifier, "'>=x'"),
        ("global", "api", "", InputError, "empty"),
        ("global", "nope", "<3", InputError, "'nope'"),
        ("channel:stabel", "api", "<3", InputError, "'channel:stabel'"),
        ("instance:nobody", "api", "<3", InputError, "'instance:nobody'"),
        ("everywhere", "api", "<3", InputError, "'everywhere'"),
    ],
)
def test_a_bad_pin_changes_nothing(
    fleet: Engine,
    scope: str,
    component: str,
    spec: str,
    error: type[Exception],
    message: str,
) -> None:
    before = snapshot(fleet)
    with pytest.raises(error, match=message):
        add_pin(scope, component, spec, reason="r", actor="alice", now=NOW, engine=fleet)
    assert snapshot(fleet) == before


def test_a_duplicate_pin_or_an_unknown_id_changes_nothing(fleet: Engine) -> None:
    add_pin("global", "api", "<9", reason="r", actor="alice", now=NOW, engine=fleet)
    before = snapshot(fleet)
    with pytest.raises(ConflictError, match="exists already"):
        add_pin("global", "api", "<9", reason="again", actor="alice", now=NOW, engine=fleet)
    with pytest.raises(NotFoundError, match="999"):
        remove_pin(999, actor="alice", engine=fleet)
    with pytest.raises(NotFoundError, match="999"):
        expire_pin(999, actor="alice", engine=fleet)
    assert snapshot(fleet) == before
