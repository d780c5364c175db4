"""Every service that takes from its caller who acts refuses a name that is no name
(the one identity rule, `fleet.core.identity`) before it writes anything, and records
the name trimmed; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from fleet.core.channels import Policy
from fleet.core.errors import InvalidIdentity
from fleet.core.fleetfile import VersionEntry, parse_fleet_data, parse_fleet_text
from fleet.db.audit import Entry
from fleet.services import advisories, audit, catalog, locks, pins, tokens
from fleet.services.fleet import apply_fleet_file
from tests.db.support import snapshot
from tests.factories import NOW

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "fleet.yaml"
DJANGO = ROOT / "tests" / "data" / "osv" / "GHSA-p64x-8rxx-wf6q.json"


def _changed_fleet() -> Any:
    data = parse_fleet_text(EXAMPLE.read_text()).to_data()
    data["pins"][0]["reason"] = "changed"
    return parse_fleet_data(data)


# Each service that records its caller's `actor`, called so that it would write.
WRITERS: dict[str, Callable[[Engine, str], object]] = {
    "pins.add_pin": lambda engine, actor: pins.add_pin(
        "global", "api", "<9", reason="r", actor=actor, now=NOW, engine=engine
    ),
    "pins.expire_pin": lambda engine, actor: pins.expire_pin(
        1, actor=actor, now=NOW, engine=engine
    ),
    "pins.remove_pin": lambda engine, actor: pins.remove_pin(
        1, actor=actor, now=NOW, engine=engine
    ),
    "fleet.apply_fleet_file": lambda engine, actor: apply_fleet_file(
        _changed_fleet(), actor=actor, now=NOW, engine=engine
    ),
    "catalog.publish_version": lambda engine, actor: catalog.publish_version(
        VersionEntry.model_validate({"component": "api", "version": "9.0.0", "released_at": NOW}),
        actor=actor,
        now=NOW,
        engine=engine,
    ),
    "catalog.set_policy_override": lambda engine, actor: catalog.set_policy_override(
        "acme-prod", Policy.FROZEN, actor=actor, now=NOW, engine=engine
    ),
    "tokens.create_token": lambda engine, actor: tokens.create_token(
        "newcomer", "viewer", actor=actor, now=NOW, engine=engine
    ),
    "tokens.revoke_token": lambda engine, actor: tokens.revoke_token(
        "leaver", actor=actor, now=NOW, engine=engine
    ),
    "advisories.import_osv": lambda engine, actor: advisories.import_osv(
        json.loads(DJANGO.read_text()), {"django": "web"}, actor=actor, now=NOW, engine=engine
    ),
    "advisories.accept_risk": lambda engine, actor: advisories.accept_risk(
        "acme-prod",
        "FLEET-2026-0004",
        reason="r",
        until=NOW + timedelta(days=1),
        actor=actor,
        now=NOW,
        engine=engine,
    ),
    "locks.release_run": lambda engine, actor: locks.release_run(
        "crashed-run", actor=actor, reason="it crashed", now=NOW, engine=engine
    ),
    "audit.append": lambda engine, actor: audit.append(
        [Entry("note", "fleet")], actor=actor, now=NOW, engine=engine
    ),
}


@pytest.fixture
def ready(engine: Engine) -> Engine:
    """The example fleet, a token to revoke and a lock to release."""
    apply_fleet_file(parse_fleet_text(EXAMPLE.read_text()), actor="ops", now=NOW, engine=engine)
    tokens.create_token("leaver", "viewer", actor="ops", now=NOW, engine=engine)
    locks.take("acme-prod", run="crashed-run", holder="h1", now=NOW, engine=engine)
    return engine


@pytest.mark.parametrize(
    ("actor", "why"),
    [
        pytest.param("alice\u200b", "U+200B is an invisible format character", id="zero-width"),
        pytest.param(
            "\u0430lice",
            "U+0430 CYRILLIC SMALL LETTER A is Cyrillic, mixed with Latin",
            id="cyrillic-a",
        ),
        pytest.param(" \t", "empty", id="blank"),
    ],
)
@pytest.mark.parametrize("writer", list(WRITERS))
def test_an_actor_that_is_no_name_is_refused_before_anything_is_written(
    ready: Engine, writer: str, actor: str, why: str
) -> None:
    before = snapshot(ready)
    with pytest.raises(InvalidIdentity) as raised:
        WRITERS[writer](ready, actor)
    assert f"{actor!r} ({why})" in str(raised.value)
    assert snapshot(ready) == before


@pytest.mark.parametrize("writer", list(WRITERS))
def test_the_actor_is_recorded_trimmed(ready: Engine, writer: str) -> None:
    last = max(e.seq for e in audit.events(engine=ready))
    WRITERS[writer](ready, " Дмитрий\n")
    assert {e.actor for e in audit.events(engine=ready) if e.seq > last} == {"Дмитрий"}


def test_a_pin_author_is_stored_trimmed(ready: Engine) -> None:
    stored = pins.add_pin("global", "api", "<9", reason="r", actor=" carol\n", engine=ready)
    assert stored.pin.author == "carol"
    assert [p.pin.author for p in pins.list_pins(engine=ready) if p.id == stored.id] == ["carol"]
