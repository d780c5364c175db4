"""Recover after a crash: close what a dead run left open and make Fleet's record
of what runs true again.

The runbook this flow replaces (what an on-call engineer did by hand):
1. find the deployment records a dead run left open (their run holds no live
   lock on the instance; a lock outlives its holder by at most one lease);
2. ask each instance's target what it runs, then close the record as
   `interrupted`: when the instance runs the revision the dead run was
   deploying, record that revision as running;
3. an instance that cannot be read now (a slow or restarting agent) is asked
   again minutes later; one still unread keeps its record open for the next
   deploy on it (which settles it under the instance's lock) or the next
   recover run, and this run ends Failed saying so;
4. publish what was done.

`fleet setup` installs an automation that starts this flow when a run of a
Fleet flow crashes (a run whose heartbeats stopped is marked Crashed by
another automation). Every deploy also settles its instance's orphans before
it starts, so a re-run converges even when this flow never ran.
"""

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from fleet.core.errors import FleetError
from fleet.services.recovery import Settled
from tasks.recovery import find_orphans, settle_orphan
from tasks.witness import publish_chain_head


class RecoveryIncomplete(FleetError):
    """Some orphans could not be settled: their records stay open for a later try."""


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
    settled: list[Settled] = []
    unsettled: list[str] = []
    for orphan in orphans:
        state = settle_orphan(orphan, flow_run_id=run_id, return_state=True)
        if state.is_completed():
            settled.append(state.result())
        else:
            unsettled.append(f"{orphan.describe()}: **left open** ({state.message})")
    lines = ["# Recovery", ""]
    if not settled and not unsettled:
        lines.append(f"Nothing left open by {flow_run_id or 'any run'}.")
    for item in settled:
        lines.append(f"- {item.orphan.describe()}: **{item.action}**")
    lines += [f"- {line}" for line in unsettled]
    create_markdown_artifact("\n".join(lines), key="fleet-recovery", description="Recovery")
    logger.info("recovered %s orphaned deploy(s)", len(settled))
    if unsettled:
        raise RecoveryIncomplete(
            f"{len(unsettled)} orphaned deploy(s) left open (the next deploy on the instance "
            "or the next recover run settles them): " + "; ".join(unsettled)
        )
    return {"recovered": [s.to_json() for s in settled]}
