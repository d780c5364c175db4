"""Recovery of what a dead run left: orphaned deployment records, on both backends."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine

from fleet.core.fleetfile import parse_fleet_text
from fleet.services import audit, deployments, locks, manifests, recovery
from fleet.services.drift import recorded_manifests
from fleet.services.fleet import apply_fleet_file
from tests.factories import NOW

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fleet.yaml"


def deploying(engine: Engine, run: str) -> tuple[str, int, str]:
    """acme-prod's new revision, with a deployment record of `run` left open."""
    apply_fleet_file(parse_fleet_text(EXAMPLE.read_text()), actor="ops", now=NOW, engine=engine)
    stored = manifests.compile_and_store(
        actor="planner", now=NOW, instances=["acme-prod"], flow_run_id="plan", engine=engine
    )
    number = stored.revisions["acme-prod"]
    deployments.start_deployment("acme-prod", number, flow_run_id=run, actor="x", engine=engine)
    (item,) = stored.plan.instances
    assert item.manifest is not None
    return "acme-prod", number, item.manifest.hash


def test_an_open_record_is_an_orphan_only_without_a_live_lease_of_its_run(
    engine: Engine,
) -> None:
    name, number, _ = deploying(engine, "dead")
    locks.take(name, run="dead", now=NOW, engine=engine)
    assert recovery.orphans(now=NOW, engine=engine) == []  # still deploying
    later = NOW + timedelta(seconds=61)  # its lease ran out: nobody renewed it
    (orphan,) = recovery.orphans(now=later, engine=engine)
    assert (orphan.instance, orphan.revision, orphan.flow_run_id) == (name, number, "dead")
    assert recovery.orphans(now=later, except_run="dead", engine=engine) == []
    assert recovery.orphans(now=later, instances=["globex-eu"], engine=engine) == []
    locks.take(name, run="other", now=later, engine=engine)  # another run took the lock
    assert len(recovery.orphans(now=later, engine=engine)) == 1


def test_an_orphan_is_closed_interrupted_and_a_target_running_it_is_recorded(
    engine: Engine,
) -> None:
    name, number, hash_ = deploying(engine, "dead")
    (orphan,) = recovery.orphans(engine=engine)
    assert recovery.close_orphan(orphan, actor="recovery", flow_run_id="rec", engine=engine)
    assert not recovery.close_orphan(orphan, actor="recovery", flow_run_id="rec", engine=engine)
    (record,) = deployments.deployments_of(name, engine=engine)
    assert record.outcome == "interrupted" and record.finished_at is not None
    assert "run dead stopped while deploying" in (record.error or "")

    assert (
        recovery.settle(orphan, "other-hash", actor="r", flow_run_id="rec", engine=engine).action
        == "unchanged"
    )
    (before,) = recorded_manifests([name], engine=engine)
    assert before.revision != number
    settled = recovery.settle(orphan, hash_, actor="recovery", flow_run_id="rec", engine=engine)
    assert settled.action == "recorded-running"
    (after,) = recorded_manifests([name], engine=engine)
    assert (after.revision, after.hash) == (number, hash_)
    again = recovery.settle(orphan, hash_, actor="recovery", flow_run_id="rec", engine=engine)
    assert again.action == "already-recorded"
    actions = [e.action for e in audit.events(engine=engine) if e.flow_run_id == "rec"]
    assert actions == ["deployment.interrupted", "manifest.deployed", "recovery.settled"]
    assert audit.verify(engine=engine).ok


def test_what_a_deploy_reads_under_its_lock_is_the_three_reads_at_once(engine: Engine) -> None:
    """`rollouts.under_lock` answers as `deployment_outcome`, `orphans` (of other
    runs) and `running_revision` do, before and after the orphan is settled and
    after this run records its own outcome."""
    from fleet.services import rollouts

    name, number, hash_ = deploying(engine, "dead")
    later = NOW + timedelta(seconds=61)

    def separately(run: str) -> rollouts.UnderLock:
        return rollouts.UnderLock(
            rollouts.deployment_outcome(name, run, engine=engine),
            recovery.orphans(instances=[name], except_run=run, now=later, engine=engine),
            rollouts.running_revision(name, engine=engine),
        )

    seen = rollouts.under_lock(name, "mine", now=later, engine=engine)
    assert seen == separately("mine")
    assert [o.flow_run_id for o in seen.orphans] == ["dead"] and seen.outcome is None
    # The dead run's own view: its record is running, and it is no orphan of itself.
    assert rollouts.under_lock(name, "dead", now=later, engine=engine) == separately("dead")
    assert rollouts.under_lock(name, "dead", now=later, engine=engine).outcome == "running"

    (orphan,) = seen.orphans
    recovery.close_orphan(orphan, actor="recovery", flow_run_id="mine", engine=engine)
    recovery.settle(orphan, hash_, actor="recovery", flow_run_id="mine", engine=engine)
    after = rollouts.under_lock(name, "mine", now=later, engine=engine)
    assert after == separately("mine")
    assert after.orphans == [] and after.running == number  # the target ran it: recorded


def test_a_deploy_opens_its_record_with_its_lock_only_when_nothing_needs_a_look_first(
    engine: Engine,
) -> None:
    """`rollouts.begin_in` (run in the transaction that takes the lock) reads as
    `under_lock` does, and opens the run's record only when asked to and when
    no record of the run, no orphan and no running revision stands in the way."""
    from fleet.db.engine import transaction
    from fleet.services import rollouts

    apply_fleet_file(parse_fleet_text(EXAMPLE.read_text()), actor="ops", now=NOW, engine=engine)
    stored = manifests.compile_and_store(
        actor="planner", now=NOW, instances=["acme-prod"], flow_run_id="plan", engine=engine
    )
    number = stored.revisions["acme-prod"]
    (item,) = stored.plan.instances
    assert item.manifest is not None
    spec = rollouts.DeploySpec(
        instance="acme-prod",
        channel=item.channel,
        policy=str(item.policy),
        decision=str(item.decision),
        revision=number,
        target=None,
        manifest={"manifest_hash": item.manifest.hash},
    )

    def begin(run: str, *, start: bool) -> rollouts.UnderLock:
        with transaction(engine) as session:
            return rollouts.begin_in(session, spec, flow_run_id=run, actor="x", start=start)

    assert begin("first", start=False) == rollouts.under_lock("acme-prod", "first", engine=engine)
    assert rollouts.deployment_outcome("acme-prod", "first", engine=engine) is None
    opened = begin("first", start=True)
    assert opened.started and opened.outcome == "running" and opened.orphans == []
    assert rollouts.deployment_outcome("acme-prod", "first", engine=engine) == "running"
    starts = [e for e in audit.events(engine=engine) if e.action == "deployment.start"]
    assert [(e.flow_run_id, e.details["revision"]) for e in starts] == [("first", number)]
    # Its own record stands in the way now (a resumed run comes back to it).
    again = begin("first", start=True)
    assert not again.started and again.outcome == "running"

    # "first" died holding nothing: its record is an orphan another run must settle first.
    second = begin("second", start=True)
    assert not second.started and [o.flow_run_id for o in second.orphans] == ["first"]
    assert rollouts.deployment_outcome("acme-prod", "second", engine=engine) is None
    (orphan,) = second.orphans
    recovery.close_orphan(orphan, actor="recovery", flow_run_id="second", engine=engine)
    recovery.settle(orphan, item.manifest.hash, actor="r", flow_run_id="second", engine=engine)
    # The revision runs already: the deploy reports it rather than opening a record.
    third = begin("third", start=True)
    assert not third.started and third.running == number and third.orphans == []
    assert rollouts.deployment_outcome("acme-prod", "third", engine=engine) is None
    assert audit.verify(engine=engine).ok
