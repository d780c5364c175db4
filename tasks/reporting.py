"""Prefect artifacts: the plan, the rollout's progress and its outcome.

Each artifact stays within `ARTIFACT_BUDGET` bytes. Prefect's server publishes
an event for every artifact and refuses, with only a log line of its own, an
event over its size limit (`PREFECT_SERVER_EVENTS_MAXIMUM_SIZE_BYTES`, 1.5 MB
by default): a 2,000-instance plan table passed it. A plan or an outcome too
big for the budget is published as what matters most first (errors,
failures, enforced fixes, approvals) and says how many instances it leaves
out and where Fleet answers for each of them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypeVar
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
from fleet.core.plan import InstancePlan, Plan, plan_summary

T = TypeVar("T")

ARTIFACT_BUDGET = 256 * 1024
"""Bytes of one artifact's content: well under the server's event limit, and a
page a browser shows at once."""

# What a cut plan or outcome shows first: what someone must act on.
_DECISION_RANK = {"error": 0, "enforce-security": 1, "needs-approval": 2, "deploy": 3}
_OUTCOME_RANK = {"failed": 0, "rolled-back": 0, "interrupted": 1, "stale-approval": 1}


def _encoded(item: object) -> int:
    return len(json.dumps(item).encode()) + 2  # as Prefect writes a list: ", " between items


def within_budget(items: Iterable[T], budget: int = ARTIFACT_BUDGET) -> tuple[list[T], int]:
    """The leading `items` whose JSON fits in `budget` bytes, and how many were left out.

    >>> within_budget(["a" * 10, "b" * 10, "c"], budget=30)
    (['aaaaaaaaaa', 'bbbbbbbbbb'], 1)
    """
    kept: list[T] = []
    used = 2
    left_out = 0
    for item in items:
        size = _encoded(item)
        if left_out or used + size > budget:
            left_out += 1
            continue
        kept.append(item)
        used += size
    return kept, left_out


def where_to_find(run_id: str | None) -> str:
    """Where Fleet answers for the instances an artifact leaves out."""
    from fleet.settings import get_settings

    run = run_id or "RUN_ID"
    where = f"`GET /rollouts/{run}/deployments?instance=NAME` on Fleet's API"
    link = get_settings().console_link(f"/console/runs/{run}")
    if link:
        where += f", or the run's page in Fleet's console ({link})"
    return (
        "Each instance's plan: `fleet plan --json --instance NAME`; what this run did "
        "on it: " + where + "."
    )


def _instance_section(item: InstancePlan) -> str:
    lines = []
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


def _by_importance(plan: Plan) -> list[InstancePlan]:
    return sorted(plan.instances, key=lambda i: _DECISION_RANK.get(str(i.decision), 9))


def plan_markdown(
    plan: Plan,
    *,
    title: str = "Plan",
    budget: int = ARTIFACT_BUDGET,
    run_id: str | None = None,
) -> str:
    """The plan for people: counts per decision, changes with reasons, advisories.

    Within `budget` bytes: a plan too big lists errors, enforced fixes,
    approvals and deploys first, and says how many instances it leaves out.
    """
    head = [f"# {title}", "", f"Planned at {isoformat(plan.at)}: {plan_summary(plan)}", ""]
    sections = [_instance_section(item) for item in plan.instances]
    whole = "\n".join([*head, *sections])
    if len(whole.encode()) <= budget:
        return whole
    shown, left_out = within_budget(
        (_instance_section(item) for item in _by_importance(plan)), budget - 2048
    )
    note = (
        f"**{left_out} of {len(sections)} instances are not shown here**, so that this "
        "artifact stays under Prefect's event size limit. " + where_to_find(run_id)
    )
    return "\n".join([*head, note, "", *shown, note])


def plan_rows(plan: Plan) -> list[dict[str, str]]:
    """One row per planned change, most urgent first (see `plan_markdown`)."""
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
        for item in _by_importance(plan)
        for change in item.changes
    ]


@task(name="publish plan", cache_policy=INPUTS + RUN_ID, persist_result=True)
def publish_plan(plan: Plan, *, dry_run: bool, run_id: str | None = None) -> None:
    title = "Plan (dry run: nothing deployed)" if dry_run else "Plan"
    create_markdown_artifact(plan_markdown(plan, title=title, run_id=run_id), key="fleet-plan")
    rows, left_out = within_budget(plan_rows(plan))
    description = None
    if left_out:
        description = (
            f"{left_out} of {len(rows) + left_out} changes not shown (Prefect's event "
            "size limit). " + where_to_find(run_id)
        )
    create_table_artifact(rows, key="fleet-plan-changes", description=description)


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


def publish_outcomes(
    rows: Sequence[Mapping[str, str]], *, summary: str, run_id: str | None = None
) -> None:
    """The outcome table; failures first when it is cut to the budget."""
    table = [dict(r) for r in rows]
    kept, left_out = within_budget(table)
    if left_out:
        ranked = sorted(table, key=lambda r: _OUTCOME_RANK.get(r.get("outcome", ""), 9))
        kept, left_out = within_budget(ranked)
        summary += (
            f". {left_out} of {len(table)} rows not shown (Prefect's event size limit), "
            "failures first. " + where_to_find(run_id)
        )
    create_table_artifact(kept, key="fleet-rollout-outcome", description=summary)
