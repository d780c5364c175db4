"""Serve every Fleet flow with its schedule in one process (no work pool, no worker).

Stopping `serve` pauses the schedules of these deployments (Prefect's behaviour).
"""

from __future__ import annotations

from typing import Any

from deployments.catalog import DEPLOYMENT_NAME, FLOWS, TIMEZONE, load_flow

__all__ = ["runner_deployments", "serve"]


def runner_deployments() -> list[Any]:
    """One `fleet` deployment per flow, with its cron schedule and default parameters."""
    from prefect.schedules import Cron

    out = []
    for entry in FLOWS:
        flow = load_flow(entry)
        out.append(
            flow.to_deployment(
                DEPLOYMENT_NAME,
                schedules=[Cron(entry.cron, timezone=TIMEZONE)] if entry.cron else None,
                parameters=dict(entry.parameters),
                description=entry.description,
                tags=["fleet"],
            )
        )
    return out


def serve(*, limit: int | None = None) -> None:  # pragma: no cover - runs until stopped
    """Serve every flow until interrupted; `limit` caps concurrent runs."""
    from prefect import serve as prefect_serve

    prefect_serve(*runner_deployments(), limit=limit)
