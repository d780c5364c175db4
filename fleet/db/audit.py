"""The audit chain in the database: serialised appends, reads in `seq` order.

Appends are serialised so that two writers never read the same chain head:
on PostgreSQL by a transaction-level advisory lock taken before the head is
read, on SQLite by the `BEGIN IMMEDIATE` every transaction starts with (see
`fleet.db.engine`). `seq` is the primary key, so a fork could not even be
stored. Hashes are computed by `fleet.core.audit`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select, text

from fleet.core.audit import GENESIS, AuditEvent, canonical_json, seal
from fleet.core.durations import require_aware
from fleet.db.bulk import bulk_insert
from fleet.db.models import AuditEventRow, table_of

__all__ = [
    "Entry",
    "append_events",
    "chain_head",
    "count_events",
    "hashes_at",
    "iter_events",
    "lock_writes",
]

# Any fixed 64-bit number: the key of Fleet's advisory lock on PostgreSQL.
_ADVISORY_LOCK_KEY = 0x466C656574  # "Fleet"
_LOCKED_IN = "fleet.writes_locked_in"  # the connection's transaction that holds the lock
_AUDIT = table_of(AuditEventRow)

# Statements every deploy runs, built once: building one costs more CPU than
# running it (SQLAlchemy's cache then finds their compiled form at once).
_LOCK_WRITES = text("SELECT pg_advisory_xact_lock(:key)")
_CHAIN_HEAD = select(_AUDIT.c.seq, _AUDIT.c.hash).order_by(_AUDIT.c.seq.desc()).limit(1)


@dataclass(frozen=True, slots=True)
class Entry:
    """An audit event to append: what was done to what, and the details."""

    action: str
    subject: str
    details: Mapping[str, Any] = field(default_factory=dict)


def lock_writes(session: Connection) -> None:
    """Serialise this transaction with every other writer (a no-op on SQLite).

    Taken by every service that changes state, before it reads: the audit
    chain head, revision numbers and the fleet it diffs against cannot
    change under it. Released when the transaction ends.
    """
    if session.dialect.name != "postgresql":
        return
    # Once per transaction: a service that holds it and then appends audit
    # events would otherwise ask again (a round trip per write).
    ongoing = session.get_transaction()
    if ongoing is not None and session.info.get(_LOCKED_IN) is ongoing:
        return
    session.execute(_LOCK_WRITES, {"key": _ADVISORY_LOCK_KEY})
    session.info[_LOCKED_IN] = ongoing


def chain_head(session: Connection) -> tuple[int, str]:
    """The last event's `seq` and `hash` (0 and GENESIS for an empty chain)."""
    row = session.execute(_CHAIN_HEAD).first()
    return (0, GENESIS) if row is None else (int(row[0]), str(row[1]))


def hashes_at(session: Connection, seqs: Iterable[int]) -> dict[int, str]:
    """The stored hash of each event in `seqs` that exists."""
    wanted = sorted(set(seqs))
    out: dict[int, str] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        rows = session.execute(select(_AUDIT.c.seq, _AUDIT.c.hash).where(_AUDIT.c.seq.in_(chunk)))
        out.update({int(r[0]): str(r[1]) for r in rows})
    return out


def count_events(session: Connection) -> int:
    return int(session.execute(select(func.count()).select_from(_AUDIT)).scalar_one())


def append_events(
    session: Connection,
    entries: Sequence[Entry],
    *,
    actor: str,
    at: datetime,
    flow_run_id: str | None = None,
) -> list[AuditEvent]:
    """Seal `entries` onto the chain, in order, inside the caller's transaction."""
    if not entries:
        return []
    require_aware(at, what="audit event time")
    lock_writes(session)
    seq, prev_hash = chain_head(session)
    sealed: list[AuditEvent] = []
    rows: list[dict[str, Any]] = []
    for entry in entries:
        seq += 1
        # Details are stored as canonical JSON text: hash what will be read back.
        details_text = canonical_json(entry.details)
        event = seal(
            AuditEvent(
                seq=seq,
                at=at,
                actor=actor,
                action=entry.action,
                subject=entry.subject,
                details=json.loads(details_text),
                flow_run_id=flow_run_id,
            ),
            prev_hash,
        )
        prev_hash = event.hash
        sealed.append(event)
        rows.append(
            {
                "seq": event.seq,
                "at": event.at,
                "actor": event.actor,
                "action": event.action,
                "subject": event.subject,
                "details": details_text,
                "flow_run_id": event.flow_run_id,
                "prev_hash": event.prev_hash,
                "hash": event.hash,
            }
        )
    bulk_insert(session, _AUDIT, rows)
    return sealed


def _event(row: Sequence[Any]) -> AuditEvent:
    return AuditEvent(
        seq=row[0],
        at=row[1],
        actor=row[2],
        action=row[3],
        subject=row[4],
        details=json.loads(row[5]),
        flow_run_id=row[6],
        prev_hash=row[7],
        hash=row[8],
    )


def iter_events(
    session: Connection,
    *,
    subject: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    upto_seq: int | None = None,
    batch: int = 5000,
) -> Iterator[AuditEvent]:
    """Events in `seq` order, read in batches (a subject ending in `*` is a prefix);
    `until` and `upto_seq` are inclusive bounds."""
    last = 0
    while True:
        c = _AUDIT.c
        query = (
            select(
                c.seq,
                c.at,
                c.actor,
                c.action,
                c.subject,
                c.details,
                c.flow_run_id,
                c.prev_hash,
                c.hash,
            )
            .where(c.seq > last)
            .order_by(c.seq)
            .limit(batch)
        )
        if subject is not None:
            if subject.endswith("*"):
                query = query.where(c.subject.startswith(subject[:-1], autoescape=True))
            else:
                query = query.where(c.subject == subject)
        if since is not None:
            query = query.where(c.at >= since)
        if until is not None:
            query = query.where(c.at <= until)
        if upto_seq is not None:
            query = query.where(c.seq <= upto_seq)
        rows = session.execute(query).all()
        for row in rows:
            yield _event(row)
        if len(rows) < batch:
            return
        last = rows[-1][0]
