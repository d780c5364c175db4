"""The audit chain: append, verify, export, log."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, TextIO

from sqlalchemy import Engine, select

from fleet.core.audit import AuditEvent, ChainVerdict, verify_chain
from fleet.core.durations import isoformat
from fleet.core.identity import check_identity
from fleet.db.audit import Entry, append_events, iter_events
from fleet.db.models import AuditEventRow, table_of
from fleet.services._common import now_or_clock, reading, writing

__all__ = ["append", "event_json", "events", "export_jsonl", "search", "verify"]

_AUDIT = table_of(AuditEventRow)


def append(
    entries: Sequence[Entry],
    *,
    actor: str,
    flow_run_id: str | None = None,
    now: datetime | None = None,
    engine: Engine | None = None,
) -> list[AuditEvent]:
    """Append events that record something done outside the database (e.g. a flow step)."""
    now = now_or_clock(now)
    actor = check_identity(actor, kind="actor")
    with writing(engine) as session:
        return append_events(session, entries, actor=actor, at=now, flow_run_id=flow_run_id)


def verify(*, engine: Engine | None = None) -> ChainVerdict:
    """Recompute the whole chain; the verdict names the first broken link."""
    with reading(engine) as session:
        return verify_chain(iter_events(session))


def events(
    *,
    subject: str | None = None,
    since: datetime | None = None,
    engine: Engine | None = None,
) -> Iterator[AuditEvent]:
    with reading(engine) as session:
        yield from iter_events(session, subject=subject, since=since)


def search(
    *,
    subject: str | None = None,
    action: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    flow_run_id: str | None = None,
    limit: int = 100,
    offset: int = 0,
    engine: Engine | None = None,
) -> tuple[list[AuditEvent], bool]:
    """Events newest first, filtered (a subject or action ending in `*` is a prefix);
    and whether there are more after this page."""
    c = _AUDIT.c
    query = select(
        c.seq, c.at, c.actor, c.action, c.subject, c.details, c.flow_run_id, c.prev_hash, c.hash
    )
    for column, value in ((c.subject, subject), (c.action, action)):
        if value:
            if value.endswith("*"):
                query = query.where(column.startswith(value[:-1], autoescape=True))
            else:
                query = query.where(column == value)
    if actor:
        query = query.where(c.actor == actor)
    if flow_run_id:
        query = query.where(c.flow_run_id == flow_run_id)
    if since is not None:
        query = query.where(c.at >= since)
    if until is not None:
        query = query.where(c.at < until)
    query = query.order_by(c.seq.desc()).limit(limit + 1).offset(offset)
    with reading(engine) as session:
        rows = session.execute(query).all()
    found = [
        AuditEvent(
            seq=r.seq,
            at=r.at,
            actor=r.actor,
            action=r.action,
            subject=r.subject,
            details=json.loads(r.details),
            flow_run_id=r.flow_run_id,
            prev_hash=r.prev_hash,
            hash=r.hash,
        )
        for r in rows[:limit]
    ]
    return found, len(rows) > limit


def event_json(event: AuditEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "at": isoformat(event.at),
        "actor": event.actor,
        "action": event.action,
        "subject": event.subject,
        "details": event.details,
        "flow_run_id": event.flow_run_id,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


def export_jsonl(out: TextIO, *, engine: Engine | None = None) -> int:
    """Write every event as one JSON line, in chain order; returns how many."""
    count = 0
    for event in events(engine=engine):
        out.write(json.dumps(event_json(event), ensure_ascii=False, sort_keys=True) + "\n")
        count += 1
    return count
