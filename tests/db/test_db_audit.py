"""The audit chain in the database: appends, filters, concurrency, tampering."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, select, text, update

from fleet.cli.main import main
from fleet.core.audit import GENESIS
from fleet.db.audit import Entry, append_events, iter_events
from fleet.db.engine import transaction
from fleet.db.models import AuditEventRow, table_of
from fleet.services import audit
from tests.db.support import cli_db  # noqa: F401  (fixture)
from tests.factories import NOW

AUDIT = table_of(AuditEventRow)
ROOT = Path(__file__).resolve().parents[2]


def _fill(engine: Engine, count: int = 5) -> None:
    for n in range(count):
        audit.append(
            [Entry("test.event", f"thing:{n % 2}", {"n": n, "when": NOW, "list": (1, 2)})],
            actor="ops",
            flow_run_id=f"run-{n}" if n % 2 else None,
            now=NOW + timedelta(minutes=n),
            engine=engine,
        )


def test_appends_link_and_verify(engine: Engine) -> None:
    _fill(engine)
    verdict = audit.verify(engine=engine)
    assert verdict.ok and verdict.checked == 5
    events = list(audit.events(engine=engine))
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert events[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(events))
    assert events[1].flow_run_id == "run-1" and events[0].flow_run_id is None
    assert events[0].details == {"n": 0, "when": "2026-11-26T12:00:00Z", "list": [1, 2]}


def test_filters_by_subject_prefix_and_time(engine: Engine) -> None:
    _fill(engine)
    assert [e.seq for e in audit.events(subject="thing:1", engine=engine)] == [2, 4]
    assert len(list(audit.events(subject="thing:*", engine=engine))) == 5
    assert [e.seq for e in audit.events(since=NOW + timedelta(minutes=3), engine=engine)] == [4, 5]


def test_reads_in_batches_keep_the_order(engine: Engine) -> None:
    with transaction(engine) as session:
        append_events(session, [Entry("a", "s", {"i": i}) for i in range(25)], actor="ops", at=NOW)
    with transaction(engine) as session:
        assert [e.seq for e in iter_events(session, batch=7)] == list(range(1, 26))


def test_an_append_rolled_back_with_its_change_leaves_no_trace(engine: Engine) -> None:
    _fill(engine, 2)
    with pytest.raises(RuntimeError), transaction(engine) as session:
        append_events(session, [Entry("x", "y")], actor="ops", at=NOW)
        raise RuntimeError("the change failed")
    assert audit.verify(engine=engine).checked == 2


_WORKER = textwrap.dedent(
    """
    import sys, time
    from fleet.db.audit import Entry
    from fleet.db.engine import make_engine
    from fleet.services.audit import append

    url, worker, count, start = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    engine = make_engine(url)
    engine.connect().close()
    while time.time() < start:
        time.sleep(0.005)
    for n in range(count):
        entry = Entry("load.test", f"worker:{worker}", {"n": n})
        append([entry], actor=f"w{worker}", engine=engine)
    engine.dispose()
    """
)


def test_concurrent_writers_never_fork_the_chain(engine: Engine, db_url: str) -> None:
    processes = 8 if engine.dialect.name == "postgresql" else 4
    per_process = 200
    start = time.time() + 4.0
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, db_url, str(w), str(per_process), str(start)],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(processes)
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=240)
        assert worker.returncode == 0, err
    verdict = audit.verify(engine=engine)
    total = processes * per_process
    assert verdict.ok, str(verdict)
    assert verdict.checked == total
    events = list(audit.events(engine=engine))
    assert [e.seq for e in events] == list(range(1, total + 1))  # no gaps
    assert len({e.prev_hash for e in events}) == total  # no two events on one link: no fork
    for w in range(processes):
        mine = [e.details["n"] for e in events if e.subject == f"worker:{w}"]
        assert mine == list(range(per_process))


def _tamper_details(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(update(AUDIT).where(AUDIT.c.seq == 3).values(details='{"n":99}'))


def _tamper_delete(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(delete(AUDIT).where(AUDIT.c.seq == 3))


def _tamper_reorder(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(update(AUDIT).where(AUDIT.c.seq == 3).values(seq=-1))
        conn.execute(update(AUDIT).where(AUDIT.c.seq == 4).values(seq=3))
        conn.execute(update(AUDIT).where(AUDIT.c.seq == -1).values(seq=4))


def _tamper_actor_sql(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_event SET actor = 'mallory' WHERE seq = 3"))


@pytest.mark.parametrize(
    ("tamper", "broken", "reason"),
    [
        (_tamper_details, 3, "edited"),
        (_tamper_actor_sql, 3, "edited"),
        (_tamper_delete, 4, "expected event 3 next, found 4"),
        (_tamper_reorder, 3, "prev_hash"),
    ],
    ids=["details", "actor", "delete", "reorder"],
)
def test_audit_verify_names_the_first_broken_link(
    cli_db: str,  # noqa: F811
    engine: Engine,
    tamper: object,
    broken: int,
    reason: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["init"]) == 0
    _fill(engine, 6)
    assert main(["audit", "verify"]) == 0
    assert "6 events verified" in capsys.readouterr().out
    tamper(engine)  # type: ignore[operator]
    assert main(["audit", "verify"]) == 1
    err = capsys.readouterr().err
    assert f"BROKEN at event {broken}:" in err and reason in err


def test_the_last_event_deleted_is_not_detectable_by_the_chain_alone(engine: Engine) -> None:
    # Documented limit of any hash chain: truncating the tail leaves a valid chain.
    # The export (fleet audit export) kept elsewhere is what shows it.
    _fill(engine, 3)
    with engine.begin() as conn:
        conn.execute(delete(AUDIT).where(AUDIT.c.seq == 3))
    assert audit.verify(engine=engine).checked == 2
    with transaction(engine) as session:
        assert session.execute(select(AUDIT.c.seq).order_by(AUDIT.c.seq)).scalars().all() == [1, 2]
