"""Plan previews: compile from the database, store nothing (what `fleet plan` does).

The fleet is read once and reused while the audit chain's head is the same:
every change of state appends an audit event in the same transaction as the
change (DESIGN.md, Audit), so an unchanged head means an unchanged fleet,
and a preview of one instance costs one small query plus its compile.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Mapping
from datetime import datetime

from sqlalchemy import Engine

from fleet.core.errors import InputError
from fleet.core.plan import Plan, compile_plan
from fleet.core.state import FleetState
from fleet.db import fleet as repo
from fleet.db.audit import chain_head
from fleet.services._common import engine_or_default, now_or_clock, reading

__all__ = ["check_selection", "current_state", "preview"]

_CACHE: dict[str, tuple[str, FleetState]] = {}
_LOCK = threading.Lock()


def current_state(*, engine: Engine | None = None) -> FleetState:
    """The fleet as stored, reused while the audit chain head is unchanged."""
    engine = engine_or_default(engine)
    key = engine.url.render_as_string(hide_password=False)
    with reading(engine) as session:
        head = chain_head(session)[1]
        with _LOCK:
            cached = _CACHE.get(key)
        if cached is not None and cached[0] == head:
            return cached[1]
        state = repo.load_state(session)
    with _LOCK:
        _CACHE[key] = (head, state)
    return state


def check_selection(
    *,
    instances: Collection[str] = (),
    channels: Collection[str] = (),
    engine: Engine | None = None,
) -> None:
    """Refuse unknown instance or channel names before a run is started for them."""
    _check(current_state(engine=engine), instances, channels)


def _check(state: FleetState, instances: Collection[str], channels: Collection[str]) -> None:
    known = {i.name for i in state.instances}
    unknown = [n for n in instances if n not in known]
    if unknown:
        raise InputError(f"Unknown instance: {', '.join(map(repr, unknown))}")
    unknown = [n for n in channels if n not in state.channels]
    if unknown:
        raise InputError(f"Unknown channel: {', '.join(map(repr, unknown))}")


def preview(
    *,
    now: datetime | None = None,
    instances: Collection[str] = (),
    channels: Collection[str] = (),
    labels: Mapping[str, str] | None = None,
    engine: Engine | None = None,
) -> Plan:
    """The plan of the selection as of `now`; an unknown instance or channel is refused."""
    now = now_or_clock(now)
    state = current_state(engine=engine)
    _check(state, instances, channels)
    return compile_plan(
        state, now, instances=instances or None, channels=channels or None, labels=labels or {}
    )
