"""Publish the audit chain's head when a flow that changes the fleet ends.

A state hook (`on_completion`, `on_failure`) rather than a task: it runs
however the flow ends, and the flow's own task graph stays the runbook.
"""

from __future__ import annotations

from typing import Any

from prefect.logging import get_logger

from fleet.services.witnesses import publish_head

__all__ = ["publish_chain_head"]


def publish_chain_head(flow: Any, flow_run: Any, state: Any) -> None:
    """Publish the chain head, naming the run; a witness that fails is logged, never
    raised (the next run or the hourly scan publishes the same events again)."""
    logger = get_logger("fleet.witness")
    try:
        outcome = publish_head(flow_run_id=str(flow_run.id))
    except Exception as exc:  # the database itself: the flow's outcome stands
        logger.warning("chain head not published: %s: %s", type(exc).__name__, exc)
        return
    head = outcome.head
    for where in outcome.published:
        logger.info("chain head %s (%s) published to %s", head.seq, head.hash[:16], where)
    for why in outcome.failed:
        logger.warning("chain head %s not published to %s", head.seq, why)
