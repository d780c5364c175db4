"""`fleet approvals code RUN_ID`: a one-time approval code for the token's holder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from fleet.cli.main import main
from fleet.core.approvals import Request
from fleet.services import approvals, codes, tokens
from fleet.services.manifests import compile_and_store
from tests.db import support

_pg_session_url = support._pg_session_url
_sqlite_template = support._sqlite_template
db_url = support.db_url
cli_db = support.cli_db
engine = support.engine

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fleet.yaml"
RUN = "0f8b1c7e-3d2a-4c55-9d43-6f7a2b1e9c10"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def waiting(cli_db: str, engine: Engine, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """A run of `ops` waiting for lts approvals, and a token per role."""
    assert run(capsys, "init")[0] == 0
    assert run(capsys, "apply", str(EXAMPLE), "--actor", "ops")[0] == 0
    stored = compile_and_store(actor="ops", engine=engine)
    requests = [
        Request(i.instance, stored.revisions[i.instance], i.manifest.hash, i.approvals_required)
        for i in stored.plan.instances
        if i.decision.value == "needs-approval" and i.manifest is not None
    ]
    approvals.open_requests(
        requests,
        requested_by="ops",
        deadlines={r.instance: datetime.now(UTC) + timedelta(hours=1) for r in requests},
        flow_run_id=RUN,
        engine=engine,
    )
    return {
        name: tokens.create_token(name, role, actor="tests", engine=engine)[1]
        for name, role in (("bob", "approver"), ("ops", "admin"), ("vic", "viewer"))
    }


def test_a_code_for_the_token_holder(
    waiting: dict[str, str],
    engine: Engine,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("FLEET_TOKEN", waiting["bob"])
    code, out, err = run(capsys, "approvals", "code", RUN)
    assert code == 0, err
    printed = out.strip()
    assert len(printed) == 23 and "for bob on run" in err and "usable once" in err
    assert codes.redeem_code(printed, flow_run_id=RUN, key="approval-1", engine=engine) == "bob"
    secret = tmp_path / "token"
    secret.write_text(waiting["bob"] + "\n")
    monkeypatch.delenv("FLEET_TOKEN")
    assert run(capsys, "approvals", "code", RUN, "--token-file", str(secret))[0] == 0


@pytest.mark.parametrize(
    ("who", "argv", "exit_code", "message"),
    [
        (None, [RUN], 2, "No API token: give --token-file or set FLEET_TOKEN"),
        ("fleet_" + "x" * 43, [RUN], 1, "Invalid or revoked token"),
        ("vic", [RUN], 1, "does not grant 'approver'"),
        ("ops", [RUN], 1, "four eyes"),
        ("bob", ["not-a-run"], 2, "Invalid flow run id: 'not-a-run'"),
        ("bob", ["11111111-2222-4333-8444-555555555555"], 1, "has asked for no approval"),
        ("bob", [RUN, "--token-file", "/nonexistent/token"], 2, "Cannot read --token-file"),
    ],
)
def test_refusals_are_clear_and_never_a_traceback(
    waiting: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    who: str | None,
    argv: list[str],
    exit_code: int,
    message: str,
) -> None:
    monkeypatch.delenv("FLEET_TOKEN", raising=False)
    if who is not None:
        monkeypatch.setenv("FLEET_TOKEN", waiting.get(who, who))
    code, out, err = run(capsys, "approvals", "code", *argv)
    assert (code, out) == (exit_code, "")
    assert message in err and "Traceback" not in err
