"""SQLite writers queue ahead of SQLite's own lock: threads on a lock, processes on a file lock."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert, select

from fleet.db.engine import create_all, make_engine, transaction
from fleet.db.models import PinRow, table_of

PIN = table_of(PinRow)

# Another process asks for the writers' file lock without waiting: 0 when it is free.
PROBE = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    sys.exit(3)
"""


def probe(lock_file: Path) -> int:
    return subprocess.run([sys.executable, "-c", PROBE, str(lock_file)], check=False).returncode


def pin(n: int) -> dict[str, object]:
    return {
        "scope": "global",
        "component": f"c{n}",
        "spec": "<3",
        "reason": "r",
        "author": "a",
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
    }


def test_a_write_holds_the_file_lock_that_other_processes_queue_on(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'fleet.db'}")
    create_all(engine)
    lock_file = tmp_path / "fleet.db-writers.lock"
    with transaction(engine) as connection:
        connection.execute(insert(PIN), [pin(0)])
        assert probe(lock_file) == 3  # held for the whole write transaction
    assert probe(lock_file) == 0
    with transaction(engine, read_only=True) as connection:
        assert probe(lock_file) == 0  # readers take no lock
        assert connection.execute(select(PIN.c.component)).scalars().all() == ["c0"]
    engine.dispose()


def test_threads_of_one_process_write_one_at_a_time_and_lose_nothing(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'fleet.db'}")
    create_all(engine)
    inside, overlaps = [0], []
    guard = threading.Lock()

    def writer(k: int) -> None:
        for i in range(25):
            with transaction(engine) as connection:
                with guard:
                    inside[0] += 1
                    overlaps.append(inside[0])
                connection.execute(insert(PIN), [pin(k * 100 + i)])
                with guard:
                    inside[0] -= 1

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert max(overlaps) == 1
    with transaction(engine, read_only=True) as connection:
        assert len(connection.execute(select(PIN.c.id)).all()) == 200
    engine.dispose()


def test_postgresql_writers_take_the_lock_once_per_transaction() -> None:
    from sqlalchemy import event, text

    from fleet.db.audit import lock_writes
    from tests.db.support import create_pg_database, drop_pg_database

    url = create_pg_database()
    engine = make_engine(url)
    asked: list[str] = []
    event.listen(
        engine,
        "before_cursor_execute",
        lambda *args: asked.append(args[2]) if "pg_advisory_xact_lock" in args[2] else None,
    )
    held = text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
    )
    try:
        for _ in range(2):  # a second transaction on the same connection takes it again
            with transaction(engine) as session:
                lock_writes(session)
                lock_writes(session)
                assert session.execute(held).scalar_one() == 1
        assert len(asked) == 2
        with transaction(engine) as session:
            assert session.execute(held).scalar_one() == 0  # released with its transaction
    finally:
        engine.dispose()
        drop_pg_database(url)
