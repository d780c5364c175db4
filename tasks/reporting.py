"""Prefect artifacts: the plan, the rollout's progress and its outcome."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from uuid import UUID

from prefect import task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import INPUTS, RUN_ID

from fleet.core.durations import isoformat
from fleet.core.plan import Plan, plan_summary


def plan_markdown(plan: Plan, *, title: str = "Plan") -> str:
    """The plan for people: counts per decision, changes with reasons, advisories."""
    lines = [f"# {title}", "", f"Planned at {isoformat(plan.at)}: {plan_summary(plan)}", ""]
    for item in plan.instances:
        head = f"## {item.instance} ({item.channel}, {item.policy}): **{item.decision}**"
        if item.approvals_required:
            head += f", {item.approvals_required} approval(s) needed"
        lines += [head, ""]
        for change in item.changes:
            lines.append(
                f"- `{change.component}` {change.from_version or '(none)'} -> "
                f"{change.to_version or '(none)'}: {change.reason}"
            )
        if not item.changes:
            lines.append("- nothing to change")
        for flag in item.advisories:
            deadline = "no deadline" if flag.deadline is None else isoformat(flag.deadline)
            state = "enforced" if flag.enforced else "flagged"
            lines.append(
                f"- advisory **{flag.advisory.id}** ({flag.advisory.severity}) on "
                f"{flag.advisory.component}: deadline {deadline}, {state}"
            )
        for override in item.overrides:
            lines.append(f"- override for {override.advisory}: breaks {override.rule}")
        for error in item.errors:
            lines.append(f"- error: {error}")
        for warning in item.warnings:
            lines.append(f"- note: {warning}")
        lines.append("")
    return "\n".join(lines)


def plan_rows(plan: Plan) -> list[dict[str, str]]:
    return [
        {
            "instance": item.instance,
            "channel": item.channel,
            "decision": str(item.decision),
            "component": change.component,
            "from": str(change.from_version or ""),
            "to": str(change.to_version or ""),
            "reason": change.reason,
        }
        for item in plan.instances
        for change in item.changes
    ]


@task(name="publish plan", cache_policy=INPUTS + RUN_ID, persist_result=True)
def publish_plan(plan: Plan, *, dry_run: bool) -> None:
    title = "Plan (dry run: nothing deployed)" if dry_run else "Plan"
    create_markdown_artifact(plan_markdown(plan, title=title), key="fleet-plan")
    create_table_artifact(plan_rows(plan), key="fleet-plan-changes")


class Progress:
    """The rollout's progress artifact, moved as instances finish.

    Every move is a request to the Prefect server, so it moves at most once
    per `every` seconds, and always when the last instance is done.
    """

    def __init__(
        self, total: int, *, every: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        artifact_id = create_progress_artifact(0.0, key="fleet-rollout-progress")
        self.artifact_id = artifact_id if isinstance(artifact_id, UUID) else None
        self.total = total
        self.done = 0
        self.every = every
        self.clock = clock
        self.moved_at = clock()
        self.shown = 0

    def advance(self, by: int = 1) -> None:
        self.done += by
        now = self.clock()
        if self.done == self.shown:
            return
        if self.done >= self.total or now - self.moved_at >= self.every:
            self.moved_at, self.shown = now, self.done
            if self.artifact_id is not None and self.total:
                update_progress_artifact(self.artifact_id, progress=100.0 * self.done / self.total)


def publish_outcomes(rows: Sequence[Mapping[str, str]], *, summary: str) -> None:
    create_table_artifact([dict(r) for r in rows], key="fleet-rollout-outcome", description=summary)
