"""Plan previews: compile from the database, store nothing (what `fleet plan` does).

The fleet is read once and reused while the audit chain's head is the same:
every change of state appends an audit event in the same transaction as the
change (DESIGN.md, Audit), so an unchanged head means an unchanged fleet.
With the fleet goes its plan memo, which keeps the part of a compile that
does not depend on the time (spec checks, compatibility, pin clashes, channel
rules), so a preview of one instance costs one small query plus what its
compile has to work out at `now`.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Mapping
from datetime import datetime

from sqlalchemy import Engine

from fleet.core.errors import InputError
from fleet.core.plan import Plan, PlanMemo, compile_plan
from fleet.core.state import FleetState
from fleet.db import fleet as repo
from fleet.db.audit import chain_head
from fleet.services._common import engine_or_default, now_or_clock, reading

__all__ = ["check_selection", "current_memo", "current_state", "preview"]

_CACHE: dict[str, tuple[str, PlanMemo]] = {}
_LOCK = threading.Lock()


def current_state(*, engine: Engine | None = None) -> FleetState:
    """The fleet as stored, reused while the audit chain head is unchanged."""
    return current_memo(engine=engine).state


def current_memo(*, engine: Engine | None = None) -> PlanMemo:
    """The plan memo of the fleet as stored (its `state`), kept as long as that fleet.

    Pass it to `compile_plan(memo.state, now, memo=memo)`; several threads may share it.
    """
    engine = engine_or_default(engine)
    key = engine.url.render_as_string(hide_password=False)
    with reading(engine) as session:
        head = chain_head(session)[1]
        with _LOCK:
            cached = _CACHE.get(key)
        if cached is not None and cached[0] == head:
            return cached[1]
        memo = PlanMemo(repo.load_state(session))
    with _LOCK:
        _CACHE[key] = (head, memo)
    return memo


def check_selection(
    *,
    instances: Collection[str] = (),
    channels: Collection[str] = (),
    engine: Engine | None = None,
) -> None:
    """Refuse unknown instance or channel names before a run is started for them."""
    _check(current_memo(engine=engine), instances, channels)


def _check(memo: PlanMemo, instances: Collection[str], channels: Collection[str]) -> None:
    known = {i.name for i in memo.named(instances)}
    unknown = [n for n in instances if n not in known]
    if unknown:
        raise InputError(f"Unknown instance: {', '.join(map(repr, unknown))}")
    unknown = [n for n in channels if n not in memo.state.channels]
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
    memo = current_memo(engine=engine)
    _check(memo, instances, channels)
    return compile_plan(
        memo.state,
        now,
        instances=instances or None,
        channels=channels or None,
        labels=labels or {},
        memo=memo,
    )
