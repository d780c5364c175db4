"""Drift check (hourly): does each instance run what Fleet recorded?

1. ask each instance's target what it runs;
2. compare with the recorded manifest (versions and manifest hash); an
   instance a deploy has under way, or recorded since its record was read, is
   not judged (a deploy applies before it records; a chunk records its
   successes when it ends): the next check sees it settled;
3. report drift as a table artifact and a `fleet.instance.drift` event, and keep
   it in Fleet's records (the console's matrix shows it);
4. with `repair`, store the recorded manifest again as a new revision and
   redeploy it with the same deploy task as every rollout.
"""

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.events import emit_event
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from fleet.core.drift import Drift
from fleet.core.identity import check_identity
from fleet.services.drift import Recorded
from flows._rollout import DEPLOY_CONCURRENCY, Strategy, rollout
from tasks.deploying import InstanceOutcome
from tasks.drift import in_motion, observe, read_recorded, record_drift, store_repair
from tasks.reporting import Progress
from tasks.witness import publish_chain_head


@flow(
    name="drift-check",
    # Prefect's annotation of `task_runner` does not accept the generic runner as written.
    task_runner=ThreadPoolTaskRunner(max_workers=DEPLOY_CONCURRENCY),  # type: ignore[arg-type]
    log_prints=True,
    on_completion=[publish_chain_head],
    on_failure=[publish_chain_head],
    on_crashed=[publish_chain_head],
)
def drift_check(
    instances: list[str] | None = None,
    repair: bool = False,
    strategy: Strategy | None = None,
    requested_by: str = "drift-check",
) -> dict[str, object]:
    """Compare every instance with its recorded manifest; optionally redeploy it.

    Args:
        instances: Instance names; empty: the whole fleet.
        repair: Redeploy the recorded manifest where an instance drifted.
        strategy: Canary, batch size and halt threshold for the repair.
        requested_by: Who asks (recorded on the repair revisions).
    """
    requested_by = check_identity(requested_by, kind="requester")
    logger = get_run_logger()
    run_id = str(flow_run.id)
    recorded = read_recorded(instances or [])
    futures = [(r, observe.submit(r)) for r in recorded if r.target]
    found_drift: list[tuple[Recorded, Drift]] = []
    unreachable: dict[str, str] = {}
    rows: list[dict[str, str]] = []
    for rec, future in futures:
        future.wait()
        if not future.state.is_completed():
            try:
                future.result(raise_on_failure=True)
            except Exception as exc:  # the target's own error, after retries
                unreachable[rec.instance] = f"{type(exc).__name__}: {exc}"
            rows.append(
                {
                    "instance": rec.instance,
                    "revision": str(rec.revision or ""),
                    "component": "",
                    "recorded": "",
                    "running": "",
                    "status": f"unreachable: {unreachable.get(rec.instance, 'failed')}",
                }
            )
            continue
        found: Drift = future.result()
        if found.drifted:
            found_drift.append((rec, found))
    # A deploy under way applies before it records: what it left is not drift.
    moving = in_motion([rec for rec, _ in found_drift]) if found_drift else {}
    drifted: list[Drift] = []
    for _, found in found_drift:
        if found.instance in moving:
            logger.info("%s not judged: %s", found.instance, moving[found.instance])
            rows.append(
                {
                    "instance": found.instance,
                    "revision": str(found.revision or ""),
                    "component": "",
                    "recorded": "",
                    "running": "",
                    "status": f"not judged: {moving[found.instance]}",
                }
            )
            continue
        drifted.append(found)
        for component, want, have in found.differences or (("", "", ""),):
            rows.append(
                {
                    "instance": found.instance,
                    "revision": str(found.revision or ""),
                    "component": component,
                    "recorded": want or "",
                    "running": have or "",
                    "status": "drift" if component else found.describe(),
                }
            )
        emit_event(
            event="fleet.instance.drift",
            resource={
                "prefect.resource.id": f"fleet.instance.{found.instance}",
                "prefect.resource.name": found.instance,
            },
            payload={"revision": found.revision, "drift": found.describe()},
        )
        logger.warning("%s drifted: %s", found.instance, found.describe())
    record_drift(
        [r.instance for r, f in futures if f.state.is_completed() and r.instance not in moving],
        drifted,
        actor=requested_by,
        flow_run_id=run_id,
    )
    create_table_artifact(
        rows
        or [
            {
                "instance": "",
                "revision": "",
                "component": "",
                "recorded": "",
                "running": "",
                "status": f"{len(futures)} instance(s) checked, no drift",
            }
        ],
        key="fleet-drift",
        description=f"{len(drifted)} of {len(futures)} instance(s) drifted",
    )
    report: dict[str, object] = {
        "checked": [r.instance for r, _ in futures],
        "drifted": {d.instance: d.describe() for d in drifted},
        "unreachable": unreachable,
        "not_judged": moving,
        "repaired": {},
    }
    if not (repair and drifted):
        return report
    specs = []
    for found in drifted:
        if found.revision is None:
            logger.error(
                "%s has no deployed revision: nothing recorded to redeploy", found.instance
            )
            continue
        specs.append(
            store_repair(
                found.instance,
                actor=requested_by,
                reason=f"drift repair: {found.describe()}",
                flow_run_id=run_id,
            )
        )
    strategy = strategy or Strategy(halt_after="100%")
    done: list[InstanceOutcome] = []
    if specs:
        rollout(
            specs,
            strategy,
            actor=requested_by,
            progress=Progress(len(specs)),
            done=done,
        )
    report["repaired"] = {o.instance: o.outcome for o in done}
    return report
