"""Instance locks as leases in Fleet's database, on SQLite and PostgreSQL, with real
threads and a real process that dies holding a lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, select

from fleet.db.engine import transaction
from fleet.services import audit, locks
from fleet.services.locks import LockKeeper, LockTimeout
from tests.factories import NOW

ROOT = Path(__file__).resolve().parents[2]


def test_a_lock_has_one_holder_until_its_lease_runs_out(engine: Engine) -> None:
    mine = locks.take("acme-prod", run="r1", holder="h1", now=NOW, engine=engine)
    assert (mine.run, mine.acquired_at, mine.expires_at) == ("r1", NOW, NOW + timedelta(seconds=60))
    theirs = locks.take("acme-prod", run="r2", holder="h2", now=NOW, engine=engine)
    assert theirs == mine  # refused: the holder's lease is what comes back
    later = NOW + timedelta(seconds=30)
    again = locks.take("acme-prod", run="r1", holder="h1", now=later, engine=engine)
    assert again.acquired_at == NOW and again.expires_at == later + timedelta(seconds=60)
    ran_out = later + timedelta(seconds=61)
    taken = locks.take("acme-prod", run="r2", holder="h2", now=ran_out, engine=engine)
    assert (taken.run, taken.acquired_at) == ("r2", ran_out)
    assert locks.renew("r1", ["acme-prod"], now=ran_out, engine=engine) == set()  # lost
    assert not locks.release("acme-prod", run="r1", engine=engine)  # not its lock any more
    assert locks.release("acme-prod", run="r2", engine=engine)
    assert locks.held(engine=engine) == []


def test_releasing_a_crashed_runs_locks_is_audited(engine: Engine) -> None:
    for name in ("a1", "a2"):
        locks.take(name, run="dead", holder="h", now=NOW, engine=engine)
    locks.take("b1", run="alive", holder="h", now=NOW, engine=engine)
    freed = locks.release_run("dead", actor="recovery", reason="run crashed", engine=engine)
    assert sorted(lease.instance for lease in freed) == ["a1", "a2"]
    assert [lease.instance for lease in locks.held(engine=engine)] == ["b1"]
    events = [e for e in audit.events(engine=engine) if e.action == "lock.released"]
    assert sorted(e.subject for e in events) == ["instance:a1", "instance:a2"]
    assert all(e.details["reason"] == "run crashed" for e in events)
    assert audit.verify(engine=engine).ok
    assert locks.release_run("dead", actor="recovery", reason="again", engine=engine) == []


def test_runs_racing_for_one_lock_get_exactly_one_holder(engine: Engine) -> None:
    winners: list[str] = []
    barrier = threading.Barrier(8)

    def contend(n: int) -> None:
        barrier.wait()
        lease = locks.take("acme-prod", run=f"r{n}", holder=f"h{n}", engine=engine)
        if lease.run == f"r{n}":
            winners.append(lease.run)

    threads = [threading.Thread(target=contend, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(winners) == 1
    (lease,) = locks.held(engine=engine)
    assert lease.run == winners[0]


def test_a_keeper_waits_names_the_holder_and_renews_what_it_holds(engine: Engine) -> None:
    keeper = LockKeeper(lease=timedelta(seconds=1.5), engine=engine, holder="test:1")
    locks.take("acme-prod", run="other", holder="elsewhere:7", engine=engine)
    with (
        pytest.raises(LockTimeout) as waited,
        keeper.hold("acme-prod", run="mine", timeout=0.3, poll=0.1),
    ):
        pass
    assert "held by run other (elsewhere:7)" in str(waited.value)
    assert waited.value.lease.run == "other"

    locks.release("acme-prod", run="other", engine=engine)
    with keeper.hold("acme-prod", run="mine", timeout=5, poll=0.1) as holding:
        first = holding.lease.expires_at
        time.sleep(2.2)  # longer than the lease: only the renewal keeps it
        (now_held,) = locks.held(engine=engine)
        assert now_held.run == "mine" and now_held.expires_at > first
        assert locks.take("acme-prod", run="other", engine=engine).run == "mine"
        assert keeper.still_held("acme-prod", "mine")
    assert locks.held(engine=engine) == []  # released on exit


def test_a_lock_waited_for_is_taken_as_soon_as_it_is_released(engine: Engine) -> None:
    keeper = LockKeeper(engine=engine)
    locks.take("acme-prod", run="other", engine=engine)
    threading.Timer(0.5, lambda: locks.release("acme-prod", run="other", engine=engine)).start()
    started = time.monotonic()
    with keeper.hold("acme-prod", run="mine", timeout=10, poll=0.1) as holding:
        assert holding.lease.run == "mine"
    assert time.monotonic() - started < 5


def test_what_a_holder_does_as_it_takes_the_lock_is_done_in_the_same_transaction(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`then` runs only once the lock is the caller's, inside the taking
    transaction (it sees the new lease; a failure in it takes nothing), and a
    holder whose own transaction released the lock is not released twice."""
    keeper = LockKeeper(engine=engine)
    seen: list[list[str]] = []

    def then(session: Connection) -> str:
        rows = session.execute(select(locks.LOCK.c.run)).scalars().all()
        seen.append(list(rows))
        return "read"

    locks.take("acme-prod", run="other", engine=engine)
    with (
        pytest.raises(LockTimeout),
        keeper.hold("acme-prod", run="mine", timeout=0.2, poll=0.1, then=then),
    ):
        pass
    assert seen == []  # never run for a lock it did not take
    locks.release("acme-prod", run="other", engine=engine)

    def fails(session: Connection) -> None:
        raise RuntimeError("broken read")

    with pytest.raises(RuntimeError), keeper.hold("acme-prod", run="mine", timeout=1, then=fails):
        pass
    assert locks.held(engine=engine) == []  # rolled back with it: not taken

    releases: list[str] = []
    release = locks.release
    monkeypatch.setattr(locks, "release", lambda i, **kw: releases.append(i) or release(i, **kw))
    with keeper.hold("acme-prod", run="mine", timeout=1, then=then) as holding:
        assert holding.then == "read" and seen == [["mine"]]
        with transaction(engine) as session:
            assert locks.release_in(session, "acme-prod", run="mine")
        holding.released = True
        assert locks.take("acme-prod", run="next", engine=engine).run == "next"  # free
    assert releases == []  # not released a second time
    assert [lease.run for lease in locks.held(engine=engine)] == ["next"]
    locks.release("acme-prod", run="next", engine=engine)
    with keeper.hold("acme-prod", run="mine", timeout=1):
        pass
    assert releases == ["acme-prod", "acme-prod"] and locks.held(engine=engine) == []


HOLDER = textwrap.dedent(
    """
    import sys, time
    from datetime import timedelta
    from fleet.db.engine import make_engine
    from fleet.services.locks import LockKeeper

    keeper = LockKeeper(lease=timedelta(seconds=2), engine=make_engine(sys.argv[1]))
    with keeper.hold("acme-prod", run="doomed", timeout=10):
        print("held", flush=True)
        time.sleep(600)
    """
)


def test_a_lock_of_a_killed_process_is_free_once_its_lease_runs_out(
    engine: Engine, db_url: str
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, db_url],
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"held"
        time.sleep(2.5)  # renewed meanwhile: still held
        assert locks.take("acme-prod", run="next", engine=engine).run == "doomed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 10
        while locks.take("acme-prod", run="next", engine=engine).run != "next":
            assert time.monotonic() < deadline, "the dead holder's lock was never freed"
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()
