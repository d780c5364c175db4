"""Instance locks, kept as leases in Fleet's database.

A deploy holds its instance's lock from before it looks at the instance until
its records are written. The lock is Fleet's own (not Prefect's concurrency
limits) so that it outlives no holder whatever fails: a Prefect server that
restarts, Redis, a worker machine. A process renews the leases it holds from
one thread (`keeper()`); a process that dies stops renewing, and its locks are
free once their lease runs out (`DEFAULT_LEASE`). Recovery frees the locks of
a run known to have crashed at once (`release_run`).

Every change of a lock is one short transaction, serialised with the other
writers, so taking a lock is compare-and-set: two runs can never both hold it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, bindparam, delete, insert, select, update

from fleet.core.errors import ConflictError
from fleet.core.identity import check_identity
from fleet.core.locks import DEFAULT_LEASE, Lease, may_take
from fleet.db.audit import Entry, append_events
from fleet.db.models import InstanceLockRow, table_of
from fleet.services._common import now_or_clock, reading, unlocked_write, writing

__all__ = [
    "Holding",
    "LockKeeper",
    "LockTimeout",
    "held",
    "keeper",
    "lease_of",
    "release",
    "release_in",
    "release_many_in",
    "release_run",
    "renew",
    "take",
    "take_in",
    "take_many_in",
    "this_process",
]

LOCK = table_of(InstanceLockRow)

# Statements every deploy runs, built once (building one costs more CPU than running it).
_LOCKS_OF = select(LOCK).where(LOCK.c.instance.in_(bindparam("instances", expanding=True)))
_NEW_LOCK = insert(LOCK)
# Sets the columns its parameters name (the WHERE's parameter is not a column's name).
_SET_LOCK = update(LOCK).where(LOCK.c.instance == bindparam("locked"))
_RELEASE = delete(LOCK).where(
    LOCK.c.instance.in_(bindparam("instances", expanding=True)) & (LOCK.c.run == bindparam("run"))
)


class LockTimeout(ConflictError):
    """Another run held an instance's lock for longer than the caller would wait."""

    def __init__(self, lease: Lease, waited: float) -> None:
        super().__init__(f"{lease.instance} is locked: {lease.describe()} (waited {waited:.0f} s)")
        self.lease = lease


def this_process() -> str:
    """`host:pid`, how a lease names the process holding it."""
    return f"{socket.gethostname()}:{os.getpid()}"


def lease_of(row: object) -> Lease:
    return Lease(
        row.instance,  # type: ignore[attr-defined]
        row.run,  # type: ignore[attr-defined]
        row.holder,  # type: ignore[attr-defined]
        row.acquired_at,  # type: ignore[attr-defined]
        row.expires_at,  # type: ignore[attr-defined]
    )


def take(
    instance: str,
    *,
    run: str,
    holder: str | None = None,
    lease: timedelta = DEFAULT_LEASE,
    now: datetime | None = None,
    engine: Engine | None = None,
) -> Lease:
    """Take (or renew) `instance`'s lock for `run` if it may; returns the lease in
    place afterwards: `run`'s own when taken, else the holder's."""
    with writing(engine) as session:
        return take_in(session, instance, run=run, holder=holder, lease=lease, now=now)


def take_in(
    session: Connection,
    instance: str,
    *,
    run: str,
    holder: str | None = None,
    lease: timedelta = DEFAULT_LEASE,
    now: datetime | None = None,
) -> Lease:
    """`take` inside the caller's writing transaction."""
    return take_many_in(session, [instance], run=run, holder=holder, lease=lease, now=now)[instance]


def take_many_in(
    session: Connection,
    instances: Collection[str],
    *,
    run: str,
    holder: str | None = None,
    lease: timedelta = DEFAULT_LEASE,
    now: datetime | None = None,
) -> dict[str, Lease]:
    """`take_in` of several instances in one read and one insert: instance -> the
    lease in place afterwards (`run`'s own where it took it)."""
    now = now_or_clock(now)
    holder = holder or this_process()
    names = list(dict.fromkeys(instances))
    if not names:
        return {}
    rows = {r.instance: r for r in session.execute(_LOCKS_OF, {"instances": names})}
    out: dict[str, Lease] = {}
    new = []
    for instance in names:
        row = rows.get(instance)
        current = None if row is None else lease_of(row)
        if not may_take(current, run, now):
            assert current is not None
            out[instance] = current
            continue
        mine = Lease(
            instance,
            run,
            holder,
            current.acquired_at if current is not None and current.run == run else now,
            now + lease,
        )
        values = {
            "run": mine.run,
            "holder": mine.holder,
            "acquired_at": mine.acquired_at,
            "expires_at": mine.expires_at,
        }
        if row is None:
            new.append({"instance": instance, **values})
        else:
            session.execute(_SET_LOCK, {"locked": instance, **values})
        out[instance] = mine
    if new:
        session.execute(_NEW_LOCK, new)
    return out


def renew(
    run: str,
    instances: Collection[str],
    *,
    lease: timedelta = DEFAULT_LEASE,
    now: datetime | None = None,
    engine: Engine | None = None,
) -> set[str]:
    """Extend `run`'s leases on `instances`; returns those it still held."""
    now = now_or_clock(now)
    if not instances:
        return set()
    with writing(engine) as session:
        found = session.execute(
            select(LOCK.c.instance).where(
                (LOCK.c.run == run) & LOCK.c.instance.in_(list(instances))
            )
        ).scalars()
        kept = set(found)
        if kept:
            session.execute(
                update(LOCK)
                .where((LOCK.c.run == run) & LOCK.c.instance.in_(sorted(kept)))
                .values(expires_at=now + lease)
            )
    return kept


def release(instance: str, *, run: str, engine: Engine | None = None) -> bool:
    """Let go of `instance`'s lock if `run` holds it; True when it did.

    One statement that cannot race, so it does not queue behind Fleet's other
    writers.
    """
    with unlocked_write(engine) as session:
        return release_in(session, instance, run=run)


def release_in(session: Connection, instance: str, *, run: str) -> bool:
    """`release` inside the caller's transaction: the lock goes when it commits
    (a deploy lets go of its instance in the transaction that records its end)."""
    return bool(release_many_in(session, [instance], run=run))


def release_many_in(session: Connection, instances: Collection[str], *, run: str) -> int:
    """`release_in` of several instances in one statement; how many `run` held."""
    if not instances:
        return 0
    gone = session.execute(_RELEASE, {"instances": list(instances), "run": run})
    return int(gone.rowcount)


def release_run(
    run: str, *, actor: str, reason: str, now: datetime | None = None, engine: Engine | None = None
) -> list[Lease]:
    """Free every lock `run` holds (it crashed); each release is an audit event."""
    now = now_or_clock(now)
    actor = check_identity(actor, kind="actor")
    with writing(engine) as session:
        rows = session.execute(select(LOCK).where(LOCK.c.run == run)).all()
        leases = [lease_of(r) for r in rows]
        if leases:
            session.execute(delete(LOCK).where(LOCK.c.run == run))
            append_events(
                session,
                [
                    Entry(
                        "lock.released",
                        f"instance:{lease.instance}",
                        {"run": run, "holder": lease.holder, "reason": reason},
                    )
                    for lease in leases
                ],
                actor=actor,
                at=now,
                flow_run_id=run,
            )
    return leases


def held(instances: Collection[str] | None = None, *, engine: Engine | None = None) -> list[Lease]:
    """The locks recorded now (live or run out), by instance."""
    with reading(engine) as session:
        query = select(LOCK).order_by(LOCK.c.instance)
        if instances is not None:
            query = query.where(LOCK.c.instance.in_(list(instances)))
        return [lease_of(r) for r in session.execute(query)]


@dataclass(slots=True)
class Holding:
    """A lock `LockKeeper.hold` holds: its lease, what `then` answered, and
    whether the holder's own transaction released it already."""

    lease: Lease
    then: object = None
    released: bool = False


class LockKeeper:
    """The locks one process holds, renewed from one thread while any is held.

    `hold(instance, run)` waits for the lock (polling), keeps it renewed, and
    releases it on exit. A lease found lost on renewal (the process was
    stopped for longer than the lease, and another run took the lock) is
    reported by `lost()`, so that a deploy can refuse to go on without it.
    """

    def __init__(
        self,
        *,
        lease: timedelta = DEFAULT_LEASE,
        engine: Engine | None = None,
        holder: str | None = None,
    ) -> None:
        self.lease = lease
        self.engine = engine
        self.holder = holder or this_process()
        self._held: dict[str, str] = {}
        self._lost: set[tuple[str, str]] = set()
        self._guard = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def hold(
        self,
        instance: str,
        *,
        run: str,
        timeout: float,
        poll: float = 1.0,
        then: Callable[[Connection], object] | None = None,
    ) -> Iterator[Holding]:
        """Wait for the lock, keep it renewed while the block runs, release it after.

        `then(session)` runs in the transaction that takes the lock, so what it
        reads or writes is the lock holder's from the first moment; its answer
        is `Holding.then`. A caller whose last transaction released the lock
        (`release_in`) says so with `Holding.released`.
        """
        started = time.monotonic()
        while True:
            with writing(self.engine) as session:
                lease = take_in(session, instance, run=run, holder=self.holder, lease=self.lease)
                answer = then(session) if then is not None and lease.run == run else None
            if lease.run == run:
                break
            waited = time.monotonic() - started
            if waited >= timeout:
                raise LockTimeout(lease, waited)
            time.sleep(min(poll, max(0.05, timeout - waited)))
        holding = Holding(lease, answer)
        with self._guard:
            self._held[instance] = run
            self._lost.discard((instance, run))
            self._start()
        try:
            yield holding
        finally:
            with self._guard:
                self._held.pop(instance, None)
            if not holding.released:
                release(instance, run=run, engine=self.engine)

    @contextlib.contextmanager
    def hold_many(
        self,
        instances: Collection[str],
        *,
        run: str,
        then: Callable[[Connection, list[str]], Mapping[str, object]] | None = None,
    ) -> Iterator[dict[str, Holding]]:
        """Take, in one transaction, the locks of those of `instances` that are free
        now (it does not wait), keep them renewed while the block runs, and
        release those still held after it, in one statement.

        Yields instance -> `Holding` for the locks taken; an instance another run
        holds is left out (wait for it alone, with `hold`, holding no other: two
        runs never wait for each other). `then(session, taken)` runs in the
        transaction that takes them and answers each one's `Holding.then`.
        """
        names = list(dict.fromkeys(instances))
        holdings: dict[str, Holding] = {}
        if names:
            with writing(self.engine) as session:
                leases = take_many_in(session, names, run=run, holder=self.holder, lease=self.lease)
                taken = [name for name in names if leases[name].run == run]
                answers = then(session, taken) if then is not None and taken else {}
            holdings = {name: Holding(leases[name], answers.get(name)) for name in taken}
        if holdings:
            with self._guard:
                for name in holdings:
                    self._held[name] = run
                    self._lost.discard((name, run))
                self._start()
        try:
            yield holdings
        finally:
            if holdings:
                with self._guard:
                    for name in holdings:
                        self._held.pop(name, None)
                left = [name for name, holding in holdings.items() if not holding.released]
                if left:
                    with unlocked_write(self.engine) as session:
                        release_many_in(session, left, run=run)

    def still_held(self, instance: str, run: str) -> bool:
        """Renew now and say whether `run` still holds `instance`'s lock."""
        return instance in renew(run, [instance], lease=self.lease, engine=self.engine)

    def lost(self) -> set[tuple[str, str]]:
        with self._guard:
            return set(self._lost)

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._renew_loop, name="fleet-lock-keeper", daemon=True
            )
            self._thread.start()

    def _renew_loop(self) -> None:
        interval = self.lease.total_seconds() / 3
        while True:
            self._wake.wait(interval)
            self._wake.clear()
            with self._guard:
                by_run: dict[str, list[str]] = {}
                for instance, run in self._held.items():
                    by_run.setdefault(run, []).append(instance)
                if not by_run:
                    self._thread = None
                    return
            for run, instances in by_run.items():
                try:
                    kept = renew(run, instances, lease=self.lease, engine=self.engine)
                except Exception:  # a database hiccup: the next round tries again
                    continue
                with self._guard:
                    self._lost.update((i, run) for i in instances if i not in kept)


_KEEPER: LockKeeper | None = None
_KEEPER_GUARD = threading.Lock()


def keeper() -> LockKeeper:
    """The process's lock keeper (one renewal thread per process)."""
    global _KEEPER
    with _KEEPER_GUARD:
        if _KEEPER is None:
            _KEEPER = LockKeeper()
        return _KEEPER
