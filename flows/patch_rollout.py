"""Patch rollout: move every instance an advisory affects to its fix, with proof.

The runbook this flow replaces:
1. publish the compliance table (instance, component, version, advisory,
   severity, deadline, time left, status) as it is before;
2. skip and report instances with a valid risk acceptance;
3. compile each affected instance's plan: an enforced advisory (critical, or
   past its deadline) gets the minimal fix, same release line first, even on
   frozen and manual instances, pins overridden and recorded;
4. deploy enforced fixes at once, the approval recorded as waived by
   security policy; send fixes not yet enforced through the channel's
   normal policy (the approval form shows the deadline; frozen ones wait,
   auto-update ones wait for their maintenance window);
5. publish the compliance table after.
"""

from dataclasses import replace
from datetime import datetime

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from fleet.core.durations import isoformat
from fleet.core.identity import check_identity
from flows._rollout import DEPLOY_CONCURRENCY, Strategy, deploy_then_ask, quoted
from tasks.planning import plan_rollout
from tasks.reporting import publish_outcomes, publish_plan
from tasks.security import (
    publish_compliance,
    read_compliance,
    select_patch,
    waiver_comment,
)
from tasks.witness import publish_chain_head


@flow(
    name="patch-rollout",
    flow_run_name="patch-rollout {advisory} by {requested_by}",
    # Prefect's annotation of `task_runner` does not accept the generic runner as written.
    task_runner=ThreadPoolTaskRunner(max_workers=DEPLOY_CONCURRENCY),  # type: ignore[arg-type]
    log_prints=True,
    on_completion=[publish_chain_head],
    on_failure=[publish_chain_head],
    on_crashed=[publish_chain_head],
)
def patch_rollout(
    advisory: str | None = None,
    strategy: Strategy | None = None,
    requested_by: str = "security-policy",
    at: datetime | None = None,
) -> dict[str, object]:
    """Patch every instance the advisory affects (every enforced advisory when empty).

    Args:
        advisory: The advisory id, e.g. FLEET-2026-0001; empty: every advisory enforced now.
        strategy: Canary, batch size, soak between waves and the halt threshold.
        requested_by: Who asks for this rollout (they cannot approve it).
        at: Evaluate deadlines and plan as of this time instead of now.
    """
    requested_by = check_identity(requested_by, kind="requester")
    strategy = strategy or Strategy()
    strategy.rules()
    logger = get_run_logger()
    run_id = str(flow_run.id)
    scope = select_patch(advisory=advisory, at=at, flow_run_id=run_id)
    now, rows, selection = scope.now, list(scope.rows), scope.selection
    ids = set(selection.advisories)
    before = [r for r in rows if r.advisory in ids]
    label = advisory or ", ".join(selection.advisories) or "no enforced advisory"
    publish_compliance(
        before, now=now, key="fleet-compliance-before", description=f"Before patching {label}"
    )
    skipped = {
        r.instance: f"risk accepted by {r.risk_acceptance.by} until "
        f"{isoformat(r.risk_acceptance.until)}: {r.risk_acceptance.reason}"
        for r in selection.accepted
        if r.risk_acceptance is not None and r.instance not in selection.instances
    }
    for name, why in skipped.items():
        logger.warning("%s skipped: %s", name, why)
    for name in selection.report_only:
        logger.info("%s: report-only advisory, nothing to deploy", name)
    report: dict[str, object] = {
        "advisories": list(selection.advisories),
        "enforced": list(selection.enforce),
        "normal": list(selection.normal),
        "skipped": skipped,
        "outcomes": {},
    }
    if not selection.instances:
        logger.info("nothing to patch for %s", label)
        publish_compliance(
            before, now=now, key="fleet-compliance-after", description=f"After patching {label}"
        )
        return report

    prepared = plan_rollout(
        instances=list(selection.instances),
        channels=[],
        labels={},
        at=now,
        dry_run=False,
        requested_by=requested_by,
        flow_run_id=run_id,
    )
    publish_plan(quoted(prepared.plan), dry_run=False, run_id=run_id)
    report["plan"] = prepared.plan.counts()
    windowed: dict[str, str] = {}
    report["waiting"] = windowed
    enforced = [s for s in prepared.specs if s.decision == "enforce-security"]
    # Not yet enforced on an auto-update instance: its maintenance window holds.
    normal_now = [
        s
        for s in prepared.specs
        if s.decision == "deploy" and s.instance not in scope.closed_windows
    ]
    for spec in prepared.specs:
        if spec.decision == "deploy" and spec.instance in scope.closed_windows:
            opens = isoformat(scope.closed_windows[spec.instance])
            logger.info("%s: the fix waits for its maintenance window (%s)", spec.instance, opens)
            windowed[spec.instance] = f"waits for its maintenance window, next opens {opens}"
    waiting = [s for s in prepared.specs if s.decision == "needs-approval"]
    for item in prepared.plan.instances:
        if item.decision.value == "skip-frozen":
            logger.info("%s is frozen: the fix waits until its deadline enforces it", item.instance)
        elif item.decision.value == "error":
            logger.error("%s cannot be patched: %s", item.instance, "; ".join(item.errors))
        elif item.decision.value == "noop":
            logger.info("%s: nothing to change", item.instance)
    for name, error in prepared.errors.items():
        logger.error("%s cannot be deployed: %s", name, error)
    # The waiver is recorded by each deploy as it starts: never for one that did not happen.
    enforced = [replace(s, waiver=waiver_comment(rows, s.instance)) for s in enforced]

    done = deploy_then_ask(
        enforced + normal_now,
        waiting,
        strategy,
        requested_by=requested_by,
        opened_at=prepared.prepared_at,
        notes=selection.deadlines,
    )

    outcomes = {o.instance: o.outcome for o in done}
    rows_out = [
        {
            "instance": o.instance,
            "revision": str(o.revision),
            "outcome": o.outcome,
            "detail": o.detail,
        }
        for o in done
    ]
    rows_out += [
        {"instance": name, "revision": "", "outcome": "skipped", "detail": why}
        for name, why in skipped.items()
    ]
    rows_out += [
        {"instance": name, "revision": "", "outcome": "waiting", "detail": why}
        for name, why in windowed.items()
    ]
    summary = ", ".join(f"{n}: {o}" for n, o in sorted(outcomes.items())) or "nothing deployed"
    publish_outcomes(rows_out, summary=summary, run_id=run_id)
    after = [r for r in read_compliance(at=now, advisories=ids or None) if r.advisory in ids]
    publish_compliance(
        after, now=now, key="fleet-compliance-after", description=f"After patching {label}"
    )
    report["outcomes"] = outcomes
    report["remaining"] = sorted({r.instance for r in after})
    logger.info("patch rollout finished: %s", summary)
    return report
