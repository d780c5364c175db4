"""Auto-update (every 15 minutes): compile and deploy the auto-update instances
whose maintenance window is open now; outside every window do nothing and say so."""

from datetime import UTC, datetime

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from fleet.core.durations import isoformat
from fleet.core.windows import WindowSelection
from fleet.services.windows import open_windows
from flows._rollout import Selector, Strategy
from flows.compile_and_deploy import compile_and_deploy
from tasks.witness import publish_chain_head


@task(name="select open windows", cache_policy=NO_CACHE)
def select_open(at: datetime) -> WindowSelection:
    return open_windows(now=at)


def _markdown(selection: WindowSelection) -> str:
    lines = [f"# Auto-update at {isoformat(selection.at)}", ""]
    if selection.open:
        lines.append(f"Window open for: {', '.join(selection.open)}")
    else:
        lines.append("No maintenance window is open: nothing is deployed.")
    for name, channel, opens in selection.closed:
        lines.append(f"- {name} ({channel}): window closed, next opens {isoformat(opens)}")
    return "\n".join(lines)


@flow(
    name="auto-update",
    log_prints=True,
    on_completion=[publish_chain_head],
    on_failure=[publish_chain_head],
    on_crashed=[publish_chain_head],
)
def auto_update(at: datetime | None = None, strategy: Strategy | None = None) -> dict[str, object]:
    """Deploy the auto-update instances whose maintenance window is open.

    Args:
        at: Act as if it were this time (windows and plan).
        strategy: Canary, batch size, soak between waves and the halt threshold.
    """
    logger = get_run_logger()
    now = at or datetime.now(UTC)
    selection = select_open(now)
    create_markdown_artifact(_markdown(selection), key="fleet-auto-update")
    for name, channel, opens in selection.closed:
        logger.info("%s (%s): outside its window, next opens %s", name, channel, isoformat(opens))
    if not selection.open:
        logger.info("outside every maintenance window at %s: nothing to do", isoformat(now))
        return {"open": [], "closed": [c[0] for c in selection.closed], "rollout": None}
    result = compile_and_deploy(
        selector=Selector(instances=list(selection.open)),
        strategy=strategy,
        requested_by="auto-update",
        at=now,
    )
    return {
        "open": list(selection.open),
        "closed": [c[0] for c in selection.closed],
        "rollout": result,
    }
