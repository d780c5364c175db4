"""Recover after a crash: close what a dead run left open and make Fleet's record
of what runs true again.

The runbook this flow replaces (what an on-call engineer did by hand):
1. find the deployment records a dead run left open (their run holds no live
   lock on the instance; a lock outlives its holder by at most one lease);
2. close each as `interrupted`;
3. ask each instance's target what it runs: when it runs the revision the
   dead run was deploying, record that revision as running;
4. publish what was done.

`fleet setup` installs an automation that starts this flow when a run of a
Fleet flow crashes (a run whose heartbeats stopped is marked Crashed by
another automation). Every deploy also settles its instance's orphans before
it starts, so a re-run converges even when this flow never ran.
"""

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from tasks.recovery import find_orphans, settle_orphan
from tasks.witness import publish_chain_head


@flow(
    name="recover",
    flow_run_name="recover {flow_run_id}",
    log_prints=True,
    on_completion=[publish_chain_head],
    on_failure=[publish_chain_head],
    on_crashed=[publish_chain_head],
)
def recover(flow_run_id: str | None = None, wait_for_leases: bool = True) -> dict[str, object]:
    """Close what dead runs left open and record what their instances run.

    Args:
        flow_run_id: The run that crashed; empty: every run that left an orphan.
        wait_for_leases: Give the crashed run's locks until their lease runs out.
    """
    logger = get_run_logger()
    run_id = str(flow_run.id)
    orphans = find_orphans(flow_run_id or None, wait_for_leases=wait_for_leases)
    settled = [settle_orphan(o, flow_run_id=run_id) for o in orphans]
    lines = ["# Recovery", ""]
    if not settled:
        lines.append(f"Nothing left open by {flow_run_id or 'any run'}.")
    for item in settled:
        lines.append(f"- {item.orphan.describe()}: **{item.action}**")
    create_markdown_artifact("\n".join(lines), key="fleet-recovery", description="Recovery")
    logger.info("recovered %s orphaned deploy(s)", len(settled))
    return {"recovered": [s.to_json() for s in settled]}
