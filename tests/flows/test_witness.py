"""Flows that change the fleet publish the chain head to Prefect as they end; the
heads in Prefect's database show a chain cut off or rewritten afterwards."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from sqlalchemy import delete, update

from fleet.core.audit import seal
from fleet.db.audit import iter_events
from fleet.db.engine import get_engine, transaction
from fleet.db.models import AuditEventRow, table_of
from fleet.services import audit
from fleet.services.witnesses import ARTIFACT_KEY, read_prefect_heads, verify_witnesses
from flows.auto_update import auto_update
from flows.compile_and_deploy import compile_and_deploy
from flows.compliance_scan import compliance_scan
from flows.drift_check import drift_check
from flows.patch_rollout import patch_rollout
from flows.recover import recover
from flows.rollback import rollback
from tests.flows.runs import FAST
from tests.flows.support import build_world

pytestmark = pytest.mark.usefixtures("prefect_server", "fleet_db")
AUDIT = table_of(AuditEventRow)


def _forget_heads() -> None:
    with get_client(sync_client=True) as client:
        for artifact in client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[ARTIFACT_KEY]))
        ):
            client.delete_artifact(artifact.id)


@pytest.mark.parametrize(
    "changes_the_fleet",
    [
        compile_and_deploy,
        patch_rollout,
        rollback,
        recover,
        compliance_scan,
        auto_update,
        drift_check,
    ],
    ids=lambda f: f.name,
)
def test_every_flow_that_changes_the_fleet_publishes_the_head(changes_the_fleet) -> None:
    for hooks in ("on_completion_hooks", "on_failure_hooks", "on_crashed_hooks"):
        assert [h.__name__ for h in getattr(changes_the_fleet, hooks)] == ["publish_chain_head"]


def test_a_rollout_publishes_the_head_and_prefect_witnesses_truncation_and_forks(
    tmp_path: Path, start_agent
) -> None:
    _forget_heads()  # the Prefect server is shared by the session's other Fleet databases
    build_world(tmp_path, start_agent, [("a1", "auto", None)])
    report = compile_and_deploy(requested_by="ops", strategy=FAST)
    assert report["outcomes"] == {"a1": "succeeded"}
    heads, notes = read_prefect_heads()
    assert notes == []
    length = audit.verify().checked
    newest = max(heads, key=lambda h: h.head.seq)
    assert newest.head.seq == length
    assert newest.flow_run_id is not None
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(newest.flow_run_id)
    assert run.name.startswith("compile-and-deploy")
    assert verify_witnesses(prefect=True).ok

    engine = get_engine()
    with transaction(engine) as session:
        events = list(iter_events(session))
        prev = events[-4].hash
        for event in events[-3:]:  # rewrite the last three events with valid hashes
            forged = seal(replace(event, actor="mallory"), prev)
            prev = forged.hash
            session.execute(
                update(AUDIT)
                .where(AUDIT.c.seq == event.seq)
                .values(actor=forged.actor, prev_hash=forged.prev_hash, hash=forged.hash)
            )
    found = verify_witnesses(prefect=True)
    assert found.verdict.ok and not found.ok
    assert {c.status.value for c in found.problems} == {"forked"}
    assert all("prefect artifact" in c.published.where for c in found.problems)

    with transaction(engine) as session:
        session.execute(delete(AUDIT).where(AUDIT.c.seq > length - 5))
    found = verify_witnesses(prefect=True)
    assert found.verdict.ok
    assert "truncated" in {c.status.value for c in found.problems}
