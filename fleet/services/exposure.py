"""Exposure over time from Fleet's records: what each instance ran (its manifest
revisions that ran, and what it ran before the first) against the advisories.

The count itself is `fleet.core.exposure`; "affected" is the advisory's own
rule. Results are kept while the audit chain's head is the same (every
change of state appends an event) and the day has not changed.
"""

from __future__ import annotations

import threading
from datetime import date, datetime, timedelta

from sqlalchemy import Engine, select

from fleet.core.exposure import DayExposure, Span, exposure_by_day
from fleet.core.manifests import Manifest
from fleet.db.history import MANIFEST, revision_of
from fleet.services._common import engine_or_default, now_or_clock, reading
from fleet.services.plans import current_memo

__all__ = ["daily_exposure"]

_CACHE: dict[tuple[str, int, int], tuple[datetime, list[DayExposure]]] = {}
_LOCK = threading.Lock()
# Fresh enough for a chart of days; the chain head catches every recorded change.
_TTL = timedelta(minutes=5)


def daily_exposure(
    *, days: int = 30, now: datetime | None = None, engine: Engine | None = None
) -> list[DayExposure]:
    """Instances affected per severity for each of the last `days` days (today last)."""
    now = now_or_clock(now)
    days = max(1, min(days, 366))
    engine = engine_or_default(engine)
    memo = current_memo(engine=engine)
    key = (engine.url.render_as_string(hide_password=False), id(memo), days)
    with _LOCK:
        hit = _CACHE.get(key)
    if hit is not None and hit[0] <= now < hit[0] + _TTL and hit[1][-1].day == now.date():
        return hit[1]
    state = memo.state
    with reading(engine) as session:
        rows = session.execute(
            select(MANIFEST)
            .where(MANIFEST.c.deployed_at.is_not(None))
            .order_by(MANIFEST.c.instance, MANIFEST.c.number)
        ).all()
    ran: dict[str, list[tuple[datetime, Manifest, dict[str, str]]]] = {}
    for row in rows:
        revision = revision_of(row)
        if revision.ran and revision.deployed_at is not None:
            ran.setdefault(row.instance, []).append(
                (revision.deployed_at, revision.manifest, dict(row.base or {}))
            )
    timelines: dict[str, list[Span]] = {}
    for inst in state.instances:
        history = sorted(ran.get(inst.name, ()), key=lambda r: r[0])
        if not history:
            timelines[inst.name] = [Span(None, dict(inst.current))]
            continue
        first_base = Manifest.from_json(history[0][2]).components
        spans = [Span(None, dict(first_base))]
        spans.extend(Span(at, dict(manifest.components)) for at, manifest, _ in history)
        timelines[inst.name] = spans
    today: date = now.date()
    chosen = [today - timedelta(days=n) for n in range(days - 1, -1, -1)]
    result = exposure_by_day(timelines, state.advisories, chosen, now=now)
    with _LOCK:
        _CACHE.clear()  # one fleet's chart at a time is what the console shows
        _CACHE[key] = (now, result)
    return result
