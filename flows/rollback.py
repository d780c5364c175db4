"""Rollback: put instances back on a manifest that ran before, fast, with a record of why.

The runbook this flow replaces:
1. find the target revision (`previous` good revision, a revision number such
   as r7, or what ran at an ISO time) and check it against the security floor;
2. record the risk acceptance when one is given (it must exist before the
   target is chosen: a target with an enforced advisory is refused without);
3. store the rollback as a new revision with `rollback_of` (history only
   moves forward);
4. ask for approval when the instance's policy is manual-approval (the
   channel's `approvals_required`, one by default);
5. deploy with the same deploy task as every rollout, verify, record.
"""

from datetime import UTC, datetime

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel, Field

from fleet.core.durations import isoformat
from fleet.core.errors import FleetError, InputError, NoRollbackTarget, RollbackRefused
from fleet.core.identity import check_identity
from fleet.core.rollback import RollbackTarget
from fleet.services.advisories import check_acceptance
from fleet.services.rollouts import DeploySpec
from flows._rollout import (
    DEPLOY_CONCURRENCY,
    Rollout,
    Strategy,
    approval_gate,
    record_closed,
)
from tasks.deploying import InstanceOutcome
from tasks.reporting import Progress, publish_outcomes
from tasks.rollback import (
    accept_risk,
    preview_rollback,
    record_request,
    store_rollback,
    verify_instance,
)
from tasks.witness import publish_chain_head


class RiskAcceptanceInput(BaseModel):
    """Who accepts running a version an enforced advisory affects, why, and until when."""

    by: str = Field(description="Who accepts the risk (e.g. the CISO).")
    reason: str = Field(description="Why the risk is acceptable.")
    until: datetime = Field(description="When the acceptance ends (ISO 8601 with a zone).")
    advisories: list[str] = Field(
        default_factory=list,
        description="Advisory ids accepted; empty: every enforced advisory the target has.",
    )


@flow(
    name="rollback",
    flow_run_name="rollback to {target} by {requested_by}",
    # Prefect's annotation of `task_runner` does not accept the generic runner as written.
    task_runner=ThreadPoolTaskRunner(max_workers=DEPLOY_CONCURRENCY),  # type: ignore[arg-type]
    log_prints=True,
    on_completion=[publish_chain_head],
    on_failure=[publish_chain_head],
    on_crashed=[publish_chain_head],
)
def rollback(
    instances: list[str],
    reason: str,
    target: str = "previous",
    risk_acceptance: RiskAcceptanceInput | None = None,
    strategy: Strategy | None = None,
    requested_by: str = "operator",
    at: datetime | None = None,
) -> dict[str, object]:
    """Roll the instances back to `target` and record why.

    Args:
        instances: Instance names.
        reason: Why (kept in the audit trail).
        target: previous (the last good revision), a revision number such as r7, or an
            ISO 8601 time (what ran then).
        risk_acceptance: Needed when the target runs a version an enforced advisory affects.
        strategy: Canary, batch size and halt threshold (defaults: one at a time).
        requested_by: Who asks for the rollback (they cannot approve it).
        at: Evaluate the security floor as of this time instead of now.
    """
    requested_by = check_identity(requested_by, kind="requester")
    if not instances:
        raise InputError("Invalid rollback: no instance named")
    if not reason.strip():
        raise InputError(f"Invalid rollback reason: {reason!r} (say why)")
    RollbackTarget.parse(target)  # a bad target fails before anything is written
    if risk_acceptance is not None:
        # So does a risk acceptance by no name, or with no reason: `accept_risk` refuses
        # it only at the first instance that needs it, after the request, and the
        # rollbacks of the instances before it, were recorded. (Its end is checked
        # there: a run that waited for approval replays these lines later.)
        by = check_acceptance(risk_acceptance.by, risk_acceptance.reason)
        risk_acceptance = risk_acceptance.model_copy(update={"by": by})
    strategy = strategy or Strategy(canary="1", batch="1", halt_after="100%")
    strategy.rules()
    logger = get_run_logger()
    run_id = str(flow_run.id)
    now = at or datetime.now(UTC)
    record_request(instances, target=target, reason=reason, actor=requested_by, flow_run_id=run_id)
    refused: dict[str, str] = {}
    specs: list[DeploySpec] = []
    for name in instances:
        try:
            preview = preview_rollback(name, target, at=at, flow_run_id=run_id)
        except NoRollbackTarget as exc:
            refused[name] = str(exc)
            continue
        if preview.blocking and risk_acceptance is not None:
            chosen = risk_acceptance.advisories or [a.id for a in preview.blocking]
            for advisory in chosen:
                accept_risk(
                    name,
                    advisory,
                    by=risk_acceptance.by,
                    reason=risk_acceptance.reason,
                    until=risk_acceptance.until,
                    at=at,
                    flow_run_id=run_id,
                )
        needed = preview.approvals_required if preview.policy == "manual-approval" else 0
        try:
            specs.append(
                store_rollback(
                    name,
                    target,
                    actor=requested_by,
                    at=at,
                    flow_run_id=run_id,
                    approvals_required=needed,
                )
            )
        except (RollbackRefused, NoRollbackTarget) as exc:
            logger.error("%s: %s", name, exc)
            refused[name] = str(exc)

    done: list[InstanceOutcome] = []
    progress = Progress(len(specs))
    deploy = Rollout(strategy, actor=requested_by, progress=progress, done=done)
    at_once = [s for s in specs if not s.approvals_required]
    waiting = [s for s in specs if s.approvals_required]
    if deploy(at_once):
        deploy.halt(waiting)
    elif waiting:
        notes = {
            s.instance: f"Rollback to revision {s.rollback_of} ({target}): {reason}"
            for s in waiting
        }
        closed = approval_gate(
            waiting,
            requested_by=requested_by,
            opened_at=datetime.now(UTC),
            poll=strategy.approval_poll_seconds,
            deploy=deploy,
            notes=notes,
        )
        record_closed(closed, actor=requested_by, progress=progress, done=done)

    by_name = {s.instance: s for s in specs}
    failures: dict[str, str] = {}
    for item in done:
        if item.outcome == "succeeded":
            problem = verify_instance(by_name[item.instance])
            if problem is not None:
                failures[item.instance] = f"verification failed: {problem}"
        else:
            failures[item.instance] = f"{item.outcome}: {item.detail}"
    rows = [
        {
            "instance": o.instance,
            "revision": str(o.revision),
            "rollback_of": str(by_name[o.instance].rollback_of),
            "outcome": o.outcome if o.instance not in failures else "failed",
            "detail": failures.get(o.instance, o.detail),
        }
        for o in done
    ]
    rows += [
        {"instance": n, "revision": "", "rollback_of": "", "outcome": "refused", "detail": why}
        for n, why in refused.items()
    ]
    summary = f"rollback to {target}: {reason}"
    publish_outcomes(rows, summary=summary, run_id=run_id)
    create_markdown_artifact(
        "\n".join(
            [f"# Rollback to {target}", "", f"Reason: {reason}", f"Requested by {requested_by}"]
            + [
                f"- {r['instance']}: {r['outcome']} (revision {r['revision'] or '-'}, "
                f"rollback of {r['rollback_of'] or '-'}) {r['detail']}"
                for r in rows
            ]
            + ["", f"Evaluated at {isoformat(now)}"]
        ),
        key="fleet-rollback",
    )
    report: dict[str, object] = {
        "outcomes": {o.instance: o.outcome for o in done},
        "revisions": {s.instance: s.revision for s in specs},
        "refused": refused,
        "failed": failures,
    }
    if refused and not specs:
        raise RollbackRefused("; ".join(f"{n}: {why}" for n, why in refused.items()))
    if refused or failures:
        problems = {**refused, **failures}
        raise FleetError(
            "rollback incomplete: " + "; ".join(f"{n}: {w}" for n, w in problems.items())
        )
    return report
