"""Engines and transactions.

SQLite runs every transaction as `BEGIN IMMEDIATE` (the pysqlite recipe in
SQLAlchemy's documentation: the driver's own transaction handling is turned
off and `begin` emits the statement), so that writers are serialised from
their first read: the audit chain head a writer reads cannot change under it.
PostgreSQL serialises audit appends with a transaction-level advisory lock
(see `fleet.db.audit`).
"""

from __future__ import annotations

import fcntl
import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

from fleet.core.errors import InputError
from fleet.db.models import metadata

__all__ = ["create_all", "dispose_engines", "get_engine", "make_engine", "transaction"]

_ENGINES: dict[str, Engine] = {}
_LOCK = threading.Lock()
_WRITERS: weakref.WeakKeyDictionary[Engine, _Writers] = weakref.WeakKeyDictionary()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    # Readers take no write lock: in WAL mode they see a consistent snapshot
    # while a writer works, so only writers queue behind each other.
    if connection.get_execution_options().get("fleet_read_only"):
        connection.exec_driver_sql("BEGIN")
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    """A new engine for `url` (SQLite: the file's directory is created)."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise InputError(f"Invalid database URL: {url!r}") from exc
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 60})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True)


def get_engine(url: str | None = None) -> Engine:
    """The shared engine for `url` (default: the settings' database URL)."""
    if url is None:
        from fleet.settings import get_settings

        url = get_settings().url
    with _LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            engine = _ENGINES[url] = make_engine(url)
        return engine


def dispose_engines() -> None:
    """Close every shared engine's connections (tests, before dropping a database)."""
    with _LOCK:
        for engine in _ENGINES.values():
            engine.dispose()
        _ENGINES.clear()


def create_all(engine: Engine) -> None:
    """Create every table directly, without migrations (tests and benchmarks)."""
    metadata.create_all(engine)


class _Writers:
    """Queues a SQLite database's writers ahead of `BEGIN IMMEDIATE`.

    Threads of this process queue on a lock; processes queue on an
    exclusive `flock` of a file beside the database, which the kernel hands
    over the moment it is released. SQLite's own busy handler polls with
    sleeps of up to 100 ms, so writers contending for its lock waited far
    longer than their writes took. Where the file cannot be opened (a
    read-only directory), processes meet at SQLite's lock as before.
    """

    def __init__(self, database: str | None) -> None:
        self._threads = threading.RLock()
        self._depth = 0
        self._fd: int | None = None
        if database and database != ":memory:" and not database.startswith("file:"):
            with suppress(OSError):
                self._fd = os.open(f"{database}-writers.lock", os.O_RDWR | os.O_CREAT, 0o600)

    def __enter__(self) -> None:
        self._threads.acquire()
        self._depth += 1
        if self._depth == 1 and self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            except BaseException:
                self._depth -= 1
                self._threads.release()
                raise

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._threads.release()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _writers(engine: Engine) -> _Writers | None:
    """The writer queue of a SQLite engine; None for other databases."""
    if engine.dialect.name != "sqlite":
        return None
    with _LOCK:
        writers = _WRITERS.get(engine)
        if writers is None:
            writers = _WRITERS[engine] = _Writers(engine.url.database)
            weakref.finalize(engine, writers.close)
        return writers


@contextmanager
def transaction(engine: Engine, *, read_only: bool = False) -> Iterator[Connection]:
    """One database transaction: committed when the block ends, rolled back on error.

    `read_only` transactions on SQLite begin deferred instead of `IMMEDIATE`;
    writing ones queue first (`_Writers`).

    Fleet speaks SQL through SQLAlchemy Core only, so a transaction is a
    plain `Connection`: an ORM session around it cost more than the query
    on the API's one-row reads.
    """
    bind = engine.execution_options(fleet_read_only=True) if read_only else engine
    lock = None if read_only else _writers(engine)
    with lock or nullcontext(), bind.begin() as connection:
        yield connection
