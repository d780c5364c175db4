"""Compliance scan (hourly): which instances run affected versions, and by when.

1. publish a table of every affected instance with deadline and time left;
2. emit a Prefect event per breach (`fleet.advisory.overdue`,
   `fleet.advisory.enforced`, and `fleet.advisory.no-fix` for an enforced
   advisory that no released version fixes yet) so that an automation can
   notify;
3. with `enforce` (the default), start a patch rollout for what is enforced:
   from a deployment, the `patch-rollout/fleet` deployment (not waited for);
   otherwise as a subflow.
"""

from datetime import UTC, datetime

from prefect import flow, get_run_logger
from prefect.deployments import run_deployment
from prefect.runtime import deployment

from flows.patch_rollout import patch_rollout
from tasks.security import emit_breaches, publish_compliance, read_compliance
from tasks.witness import publish_chain_head

PATCH_DEPLOYMENT = "patch-rollout/fleet"


@flow(
    name="compliance-scan",
    log_prints=True,
    on_completion=[publish_chain_head],
    on_failure=[publish_chain_head],
    on_crashed=[publish_chain_head],
)
def compliance_scan(enforce: bool = True, at: datetime | None = None) -> dict[str, object]:
    """Report affected instances, emit breach events, and patch what is enforced.

    Args:
        enforce: Start a patch rollout for every advisory enforced now.
        at: Evaluate deadlines as of this time instead of now.
    """
    logger = get_run_logger()
    now = at or datetime.now(UTC)
    rows = read_compliance(at=now)
    breaches = [r for r in rows if r.enforced]
    publish_compliance(
        rows,
        now=now,
        key="fleet-compliance",
        description=f"{len({r.instance for r in rows})} affected instance(s), "
        f"{len(breaches)} enforced finding(s)",
    )
    events = emit_breaches(rows, now=now)
    report: dict[str, object] = {
        "affected": sorted({r.instance for r in rows}),
        "events": events,
        "patch": None,
    }
    if not (enforce and breaches):
        logger.info("%s finding(s), %s enforced; nothing started", len(rows), len(breaches))
        return report
    if deployment.id:
        started = run_deployment(
            PATCH_DEPLOYMENT,
            parameters={"requested_by": "compliance-scan", "at": at.isoformat() if at else None},
            timeout=0,
        )
        logger.info("started %s: run %s", PATCH_DEPLOYMENT, getattr(started, "id", started))
        report["patch"] = str(getattr(started, "id", started))
    else:
        report["patch"] = patch_rollout(requested_by="compliance-scan", at=now)
    return report
