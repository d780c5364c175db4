"""Witnessed chain heads: a cut-off tail and a chain rewritten from event k both verify
on their own; the heads published outside the database show them."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings
from sqlalchemy import Engine, delete, update

from fleet.cli.main import main
from fleet.core.audit import GENESIS, seal
from fleet.db.audit import Entry, iter_events
from fleet.db.engine import transaction
from fleet.db.models import AuditEventRow, table_of
from fleet.services import audit
from fleet.services.witnesses import publish_head, verify_witnesses
from tests.db.support import cli_db  # noqa: F401  (fixture)
from tests.factories import NOW

AUDIT = table_of(AuditEventRow)


def _fill(engine: Engine, start: int, count: int) -> None:
    for n in range(start, start + count):
        audit.append(
            [Entry("pin.create", f"pin:{n}", {"n": n})],
            actor="ops",
            now=NOW + timedelta(minutes=n),
            engine=engine,
        )


def _truncate(engine: Engine, keep: int) -> None:
    """Whoever can write to the database deletes the newest events."""
    with transaction(engine) as session:
        session.execute(delete(AUDIT).where(AUDIT.c.seq > keep))


def _fork(engine: Engine, k: int) -> None:
    """Rewrite the chain from event `k` on, with valid new hashes."""
    with transaction(engine) as session:
        events = list(iter_events(session))
        prev = GENESIS if k == 1 else events[k - 2].hash
        for event in events[k - 1 :]:
            forged = seal(replace(event, actor="mallory"), prev)
            prev = forged.hash
            session.execute(
                update(AUDIT)
                .where(AUDIT.c.seq == event.seq)
                .values(actor=forged.actor, prev_hash=forged.prev_hash, hash=forged.hash)
            )


@pytest.fixture
def witnessed(cli_db: str, engine: Engine, tmp_path: Path) -> Path:  # noqa: F811
    """Eight events; heads published after event 6 and after event 8 to a witness file."""
    assert main(["init"]) == 0
    heads = tmp_path / "witness" / "heads.jsonl"
    _fill(engine, 1, 6)
    assert main(["audit", "publish-head", "--witness-file", str(heads), "--no-prefect"]) == 0
    _fill(engine, 7, 2)
    assert main(["audit", "publish-head", "--witness-file", str(heads), "--no-prefect"]) == 0
    return heads


def _verify(heads: Path) -> int:
    return main(["audit", "verify", "--witnesses", "--witness-file", str(heads), "--no-prefect"])


def test_an_intact_chain_agrees_with_every_head(
    witnessed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert [json.loads(line)["seq"] for line in witnessed.read_text().splitlines()] == [6, 8]
    assert _verify(witnessed) == 0
    assert "2 published head(s) checked, 2 agree" in capsys.readouterr().out


def test_a_cut_off_tail_is_named_truncated(
    witnessed: Path, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    _truncate(engine, keep=6)
    capsys.readouterr()
    assert main(["audit", "verify"]) == 0  # the chain alone cannot tell
    assert "6 events verified" in capsys.readouterr().out
    assert _verify(witnessed) == 1
    err = capsys.readouterr().err
    assert "TRUNCATED: head 8" in err
    assert f"in file {witnessed} line 2" in err and "published 2026-" in err
    assert "the chain now ends at event 6" in err
    assert "head 6 " not in err


def test_a_rewritten_chain_is_named_forked(
    witnessed: Path, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    _fork(engine, 4)
    capsys.readouterr()
    assert main(["audit", "verify"]) == 0  # the forged chain verifies on its own
    assert "8 events verified" in capsys.readouterr().out
    assert _verify(witnessed) == 1
    err = capsys.readouterr().err
    assert "FORKED: head 6" in err and "FORKED: head 8" in err
    assert f"file {witnessed} line 1" in err


def test_a_fork_then_new_events_past_the_head_is_still_a_fork(
    witnessed: Path, engine: Engine
) -> None:
    _truncate(engine, keep=3)
    _fill(engine, 100, 7)  # the chain grows past every head again, on new hashes
    found = verify_witnesses(file=witnessed, prefect=False, engine=engine)
    assert found.verdict.ok
    assert [c.status.value for c in found.checks] == ["forked", "forked"]


def test_an_unreadable_witness_line_is_reported(
    witnessed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with witnessed.open("a") as out:
        out.write("not json\n")
    capsys.readouterr()
    assert _verify(witnessed) == 0
    assert "line 3 is not a chain head" in capsys.readouterr().err


def test_prefect_unreachable_is_said_not_crashed(
    witnessed: Path, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        outcome = publish_head(file=witnessed, engine=engine)
        assert outcome.published == (f"file {witnessed}",)
        assert outcome.failed and "prefect at http://127.0.0.1:9/api" in outcome.failed[0]
        capsys.readouterr()
        code = main(["audit", "verify", "--witnesses", "--witness-file", str(witnessed)])
    assert code == 0
    assert "Prefect at http://127.0.0.1:9/api could not be read" in capsys.readouterr().err
