"""What every use case needs: the engine, the time, one locked transaction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine

from fleet.core.durations import require_aware
from fleet.db.audit import lock_writes
from fleet.db.engine import get_engine, transaction

__all__ = ["engine_or_default", "now_or_clock", "reading", "unlocked_write", "writing"]


def engine_or_default(engine: Engine | None) -> Engine:
    return engine if engine is not None else get_engine()


def now_or_clock(now: datetime | None) -> datetime:
    return datetime.now(UTC) if now is None else require_aware(now)


@contextmanager
def writing(engine: Engine | None) -> Iterator[Connection]:
    """One transaction that changes state, serialised with every other writer."""
    with transaction(engine_or_default(engine)) as session:
        lock_writes(session)
        yield session


@contextmanager
def unlocked_write(engine: Engine | None) -> Iterator[Connection]:
    """One transaction that changes state without Fleet's write lock: only for
    a single statement that cannot race and appends no audit event."""
    with transaction(engine_or_default(engine)) as session:
        yield session


@contextmanager
def reading(engine: Engine | None) -> Iterator[Connection]:
    """One transaction that only reads (it does not queue behind writers)."""
    with transaction(engine_or_default(engine), read_only=True) as session:
        yield session
