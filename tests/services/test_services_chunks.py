"""A deploy task's chunk: its locks taken and records opened in one transaction,
its ends recorded in one, in a few statements whatever its size, all or nothing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event

from fleet.core.errors import ConflictError
from fleet.core.fleetfile import VersionEntry, parse_fleet_data
from fleet.services import audit, deployments, locks, rollouts
from fleet.services.catalog import publish_version
from fleet.services.fleet import apply_fleet_file
from fleet.services.manifests import history
from fleet.services.rollouts import DeploySpec, UnderLock

COMPONENTS = ("api", "web")


def _version(component: str, version: str) -> dict[str, Any]:
    return {
        "component": component,
        "version": version,
        "released_at": "2026-01-01T00:00:00Z",
        "artifact": {"url": f"https://example.test/{component}-{version}", "sha256": "a" * 64},
    }


def _specs(engine: Engine, count: int) -> list[DeploySpec]:
    data = {
        "format": 1,
        "components": list(COMPONENTS),
        "versions": [_version(c, "1.0.0") for c in COMPONENTS],
        "channels": [{"name": "auto", "policy": "auto-update"}],
        "instances": [
            {"name": f"i{i:03d}", "customer": f"c{i}", "channel": "auto", "target": f"t{i}"}
            for i in range(count)
        ],
    }
    apply_fleet_file(parse_fleet_data(data), actor="ops", engine=engine)
    for c in COMPONENTS:
        publish_version(
            VersionEntry.model_validate(_version(c, "1.1.0")), actor="ops", engine=engine
        )
    return list(rollouts.prepare_rollout(actor="ops", flow_run_id="plan", engine=engine).specs)


@contextmanager
def _counted(engine: Engine) -> Iterator[list[int]]:
    count = [0]

    def one(*_: object) -> None:
        count[0] += 1

    event.listen(engine, "before_cursor_execute", one)
    try:
        yield count
    finally:
        event.remove(engine, "before_cursor_execute", one)


def _begin(engine: Engine, chunk: list[DeploySpec], run: str) -> tuple[Any, dict[str, Any], int]:
    keeper = locks.LockKeeper(engine=engine)

    def begin(session: Connection, taken: list[str]) -> dict[str, UnderLock]:
        return rollouts.begin_many_in(
            session, chunk, flow_run_id=run, actor="deployer", starting=set(taken)
        )

    with _counted(engine) as statements:
        hold = keeper.hold_many([s.instance for s in chunk], run=run, then=begin)
        held = hold.__enter__()
    return hold, held, statements[0]


def test_a_chunk_is_begun_in_the_same_statements_whatever_its_size(engine: Engine) -> None:
    specs = _specs(engine, 30)
    small, big = specs[:5], specs[5:]
    hold_small, held_small, begun_small = _begin(engine, small, "run-a")
    hold_big, held_big, begun_big = _begin(engine, big, "run-a")
    assert begun_small == begun_big <= 12
    for held in (held_small, held_big):
        assert all(isinstance(h.then, UnderLock) and h.then.started for h in held.values())
    assert {lease.instance for lease in locks.held(engine=engine)} == {s.instance for s in specs}
    ends = [(s, "succeeded", None) for s in big[1:]] + [(big[0], "failed", "boom")]
    with _counted(engine) as statements:
        rollouts.record_ended(
            ends, flow_run_id="run-a", actor="deployer", release=True, engine=engine
        )
    assert statements[0] <= 14  # for 25 instances: it was 9 each, in a transaction each
    for holding in held_big.values():
        holding.released = True
    hold_big.__exit__(None, None, None)
    hold_small.__exit__(None, None, None)  # never ended: released on exit, records left open

    assert locks.held(engine=engine) == []
    records = {
        d.instance: (d.outcome, d.error)
        for s in specs
        for d in deployments.deployments_of(s.instance, engine=engine)
    }
    assert records == {
        **{s.instance: ("running", None) for s in small},
        **{s.instance: ("succeeded", None) for s in big[1:]},
        big[0].instance: ("failed", "boom"),
    }
    running = {s.instance: rollouts.running_revision(s.instance, engine=engine) for s in specs}
    assert running == {s.instance: s.revision if s in big[1:] else None for s in specs}
    assert str(history(big[0].instance, engine=engine)[-1].revision.status) == "failed"
    # Each instance's events in order: its manifest's, then its record's.
    assert audit.verify(engine=engine).ok
    actions = [e.action for e in audit.events(subject=f"instance:{big[1].instance}", engine=engine)]
    assert actions[-3:] == ["deployment.start", "manifest.deployed", "deployment.succeeded"]


def test_a_chunk_s_ends_are_recorded_all_or_none(engine: Engine) -> None:
    specs = _specs(engine, 6)
    hold, _, _ = _begin(engine, specs, "run-b")
    deployments.finish_deployment(
        specs[3].instance,
        flow_run_id="run-b",
        outcome="interrupted",
        actor="recovery",
        engine=engine,
    )
    events = audit.verify(engine=engine).checked
    ends = [(s, "succeeded", None) for s in specs]
    with pytest.raises(ConflictError, match=f"{specs[3].instance} run run-b already finished"):
        rollouts.record_ended(
            ends, flow_run_id="run-b", actor="deployer", release=True, engine=engine
        )
    assert audit.verify(engine=engine).checked == events  # nothing written
    assert len(locks.held(engine=engine)) == len(specs)  # nor released
    outcomes = [deployments.deployments_of(s.instance, engine=engine)[0].outcome for s in specs]
    assert outcomes == ["running"] * 3 + ["interrupted"] + ["running"] * 2
    hold.__exit__(None, None, None)
    assert locks.held(engine=engine) == []


def test_a_chunk_takes_only_the_free_locks_and_opens_records_only_where_nothing_is_in_the_way(
    engine: Engine,
) -> None:
    specs = _specs(engine, 4)
    locks.take(specs[0].instance, run="other", engine=engine)
    deployments.start_deployment(
        specs[1].instance, specs[1].revision, flow_run_id="run-c", actor="deployer", engine=engine
    )
    keeper = locks.LockKeeper(engine=engine)

    def begin(session: Connection, taken: list[str]) -> dict[str, UnderLock]:
        starting = {s.instance for s in specs if s is not specs[2]}  # [2] awaits a check first
        return rollouts.begin_many_in(
            session,
            [s for s in specs if s.instance in taken],
            flow_run_id="run-c",
            actor="deployer",
            starting=starting,
        )

    with keeper.hold_many([s.instance for s in specs], run="run-c", then=begin) as held:
        assert sorted(held) == [s.instance for s in specs[1:]]
        seen = {name: h.then for name, h in held.items()}
        assert isinstance(seen[specs[1].instance], UnderLock)
        assert (seen[specs[1].instance].outcome, seen[specs[1].instance].started) == (
            "running",
            False,
        )
        assert seen[specs[2].instance] == UnderLock(None, [], None)
        assert seen[specs[3].instance] == UnderLock("running", [], None, started=True)
    assert [lease.run for lease in locks.held(engine=engine)] == ["other"]


def _trace(engine: Engine, instance: str) -> tuple[Any, ...]:
    """What an instance's records say, with names and times left out."""
    records = [
        (d.manifest_number, d.outcome, d.error)
        for d in deployments.deployments_of(instance, engine=engine)
    ]
    revisions = [
        (h.revision.number, str(h.revision.status)) for h in history(instance, engine=engine)
    ]
    events = [
        (e.action, dict(e.details))
        for e in audit.events(subject=f"instance:{instance}", engine=engine)
        if e.action != "instance.create"  # it names the instance
    ]
    return records, revisions, rollouts.running_revision(instance, engine=engine), events


def test_a_chunk_s_ends_record_what_they_would_one_by_one(engine: Engine) -> None:
    """Differential: half the instances end together (`record_ended`), their twins
    with the same outcomes one at a time (`record_finished`); over three rollouts,
    each instance reads exactly as its twin."""
    count = 14
    specs = _specs(engine, 2 * count)
    twin = {f"i{i:03d}": f"i{i + count:03d}" for i in range(count)}
    kinds = ["succeeded", "failed", "rolled-back", "stale-approval", "halted", "expired", "locked"]
    for round_ in range(3):
        if round_:
            for c in COMPONENTS:
                entry = VersionEntry.model_validate(_version(c, f"1.{round_ + 1}.0"))
                publish_version(entry, actor="ops", engine=engine)
            prepared = rollouts.prepare_rollout(
                actor="ops", flow_run_id=f"p{round_}", engine=engine
            )
            specs = list(prepared.specs)
        assert len(specs) == 2 * count
        run = f"run-{round_}"
        together = [s for s in specs if s.instance in twin]
        alone = [s for s in specs if s.instance not in twin]
        outcome = {s.instance: kinds[(i + round_) % len(kinds)] for i, s in enumerate(together)}
        outcome.update({twin[a]: kind for a, kind in list(outcome.items())})
        hold, _, _ = _begin(engine, specs, run)
        ends = [(s, outcome[s.instance], f"why {outcome[s.instance]}") for s in together]
        rollouts.record_ended(ends, flow_run_id=run, actor="deployer", release=True, engine=engine)
        for s in alone:
            kind = outcome[s.instance]
            rollouts.record_finished(
                s, kind, flow_run_id=run, actor="d", error=f"why {kind}", engine=engine
            )
        hold.__exit__(None, None, None)
        assert locks.held(engine=engine) == []
    for a, b in twin.items():
        assert _trace(engine, a) == _trace(engine, b), (a, b)
    assert audit.verify(engine=engine).ok
