"""Plan previews: compile from the database, store nothing (what `fleet plan` does)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime

from sqlalchemy import Engine

from fleet.core.errors import InputError
from fleet.core.plan import Plan, compile_plan
from fleet.services._common import now_or_clock
from fleet.services.fleet import load_state

__all__ = ["check_selection", "preview"]


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
    state = load_state(engine=engine)
    known = {i.name for i in state.instances}
    for name in instances:
        if name not in known:
            raise InputError(f"Unknown instance: {name!r}")
    for name in channels:
        if name not in state.channels:
            raise InputError(f"Unknown channel: {name!r}")
    return compile_plan(
        state, now, instances=instances or None, channels=channels or None, labels=labels or {}
    )


def check_selection(
    *,
    instances: Collection[str] = (),
    channels: Collection[str] = (),
    engine: Engine | None = None,
) -> None:
    """Refuse unknown instance or channel names before a run is started for them."""
    state = load_state(engine=engine)
    known = {i.name for i in state.instances}
    unknown = [n for n in instances if n not in known]
    if unknown:
        raise InputError(f"Unknown instance: {', '.join(map(repr, unknown))}")
    unknown = [n for n in channels if n not in state.channels]
    if unknown:
        raise InputError(f"Unknown channel: {', '.join(map(repr, unknown))}")
