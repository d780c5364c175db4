"""Compile and deploy: plan the selection, get the approvals its channels demand,
deploy in waves, roll back what fails, and record every step.

The runbook this flow replaces:
1. compile the plan and store the manifests; publish it as artifacts;
2. deploy what needs no approval (auto-update, enforced security fixes);
3. ask for approval of the rest and wait; deploy what is approved;
4. never touch frozen instances; report instances that cannot be planned.

Approvals: while approvals are missing the run waits for a `RunInput` form
(Resume in the Prefect UI, `resume_flow_run`, or Fleet's API). Run from a
deployment, it *suspends*: the process exits and no worker slot is held for
the days an approval may take; on resume Prefect starts it again from the
top, and the cached plan, Fleet's records (one deployment record per
instance and run, approvals recorded once) and Prefect's stored inputs make
that replay land exactly where the run stopped. Run without a deployment
(tests, a plain call), it *pauses* in process.
"""

from datetime import datetime

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from fleet.core.identity import check_identity
from fleet.services.rollouts import describe
from flows._rollout import (
    DEPLOY_CONCURRENCY,
    ApprovalInput,
    Selector,
    Strategy,
    deploy_then_ask,
    quoted,
)
from tasks.planning import plan_rollout
from tasks.reporting import publish_outcomes, publish_plan
from tasks.witness import publish_chain_head

# Re-exported: callers start this flow with these models.
__all__ = ["ApprovalInput", "Selector", "Strategy", "compile_and_deploy"]


@flow(
    name="compile-and-deploy",
    flow_run_name="compile-and-deploy by {requested_by}",
    # Prefect's annotation of `task_runner` does not accept the generic runner as written.
    task_runner=ThreadPoolTaskRunner(max_workers=DEPLOY_CONCURRENCY),  # type: ignore[arg-type]
    log_prints=True,
    on_completion=[publish_chain_head],
    on_failure=[publish_chain_head],
    on_crashed=[publish_chain_head],
)
def compile_and_deploy(
    selector: Selector | None = None,
    dry_run: bool = False,
    strategy: Strategy | None = None,
    requested_by: str = "scheduler",
    at: datetime | None = None,
) -> dict[str, object]:
    """Plan the selected instances and roll the plan out.

    Args:
        selector: Which instances; empty means the whole fleet.
        dry_run: Plan and publish the plan only; nothing is stored as deployable.
        strategy: Canary, batch size, soak between waves and the halt threshold.
        requested_by: Who asks for this rollout (they cannot approve it).
        at: Plan as of this time instead of now.
    """
    requested_by = check_identity(requested_by, kind="requester")
    selector = selector or Selector()
    strategy = strategy or Strategy()
    strategy.rules()  # bad amounts fail here, before anything is written
    logger = get_run_logger()
    run_id = str(flow_run.id)
    prepared = plan_rollout(
        instances=selector.instances,
        channels=selector.channels,
        labels=selector.labels,
        at=at,
        dry_run=dry_run,
        requested_by=requested_by,
        flow_run_id=run_id,
    )
    publish_plan(quoted(prepared.plan), dry_run=dry_run, run_id=run_id)
    counts = prepared.plan.counts()
    report: dict[str, object] = {"plan": counts, "dry_run": dry_run, "outcomes": {}}
    if dry_run:
        logger.info("dry run: %s", counts)
        return report

    now_specs = [s for s in prepared.specs if s.decision in ("deploy", "enforce-security")]
    waiting = [s for s in prepared.specs if s.decision == "needs-approval"]
    for item in prepared.plan.instances:
        if item.decision.value == "skip-frozen":
            logger.info(
                "%s is frozen: not deployed (%s changes shown)", item.instance, len(item.changes)
            )
        elif item.decision.value == "error":
            logger.error("%s cannot be planned: %s", item.instance, "; ".join(item.errors))
    for name, error in prepared.errors.items():
        logger.error("%s cannot be deployed: %s", name, error)

    done = deploy_then_ask(
        now_specs,
        waiting,
        strategy,
        requested_by=requested_by,
        opened_at=prepared.prepared_at,
    )

    outcomes: dict[str, str] = {o.instance: o.outcome for o in done}
    specs = {s.instance: s for s in prepared.specs}
    rows = [
        {
            "instance": o.instance,
            "revision": str(o.revision),
            "outcome": o.outcome,
            "changes": describe(specs[o.instance]) if o.instance in specs else "",
            "detail": o.detail,
        }
        for o in done
    ]
    for item in prepared.plan.instances:
        if item.instance not in outcomes:
            rows.append(
                {
                    "instance": item.instance,
                    "revision": "",
                    "outcome": str(item.decision),
                    "changes": "",
                    "detail": "; ".join(item.errors),
                }
            )
    summary = (
        ", ".join(
            f"{sum(1 for o in done if o.outcome == k)} {k}"
            for k in sorted({o.outcome for o in done})
        )
        or "nothing to deploy"
    )
    publish_outcomes(rows, summary=summary, run_id=run_id)
    logger.info("rollout finished: %s", summary)
    report["outcomes"] = outcomes
    return report
