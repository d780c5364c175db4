"""Plan and outcome artifacts of big rollouts stay under Prefect's event size limit.

Prefect's server publishes an event for every artifact it stores and refuses,
with only a log line of its own, an event over 1.5 MB: a 2,000-instance plan
table passed it. What is cut is said in the artifact, with where Fleet answers
for the rest, and what someone must act on comes first.
"""

from __future__ import annotations

import json

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.runtime import flow_run

from fleet.core.plan import Plan, compile_plan
from tasks.reporting import (
    ARTIFACT_BUDGET,
    plan_markdown,
    plan_rows,
    publish_outcomes,
    publish_plan,
    within_budget,
)
from tests.factories import NOW, advisory, channel, cv, instance, state

EVENT_LIMIT = 1_500_000  # PREFECT_SERVER_EVENTS_MAXIMUM_SIZE_BYTES, Prefect's default
COMPONENTS = ("api", "web", "worker", "migrations", "scheduler")


def big_plan(count: int) -> Plan:
    """`count` auto-update instances, each moving 5 components; one under a critical."""
    registry = [cv(c, v) for c in COMPONENTS for v in ("1.0.0", "1.1.0")]
    fleet = state(
        components=COMPONENTS,
        registry=registry,
        channels=[channel("stable"), channel("frozen", policy="frozen")],
        instances=[
            instance(
                f"customer-{i:05d}-with-a-long-name",
                channel="frozen" if i == count - 1 else "stable",
                current=dict.fromkeys(COMPONENTS, "1.0.0"),
            )
            for i in range(count)
        ],
        advisories=[advisory(component="api", events=[{"introduced": "0"}, {"fixed": "1.1.0"}])],
    )
    return compile_plan(fleet, NOW)


def size(value: object) -> int:
    """Bytes of `value` as JSON (a string Prefect gives back is JSON already)."""
    return len((value if isinstance(value, str) else json.dumps(value)).encode())


def test_within_budget_keeps_the_leading_items_that_fit() -> None:
    items = [{"n": "x" * 100}] * 50
    kept, left_out = within_budget(items, budget=1000)
    assert kept == items[: len(kept)] and left_out == 50 - len(kept)
    assert size(kept) <= 1000 < size(items[: len(kept) + 2])
    assert within_budget([], budget=10) == ([], 0)


def test_a_small_plan_is_shown_whole() -> None:
    plan = big_plan(20)
    text = plan_markdown(plan)
    assert "not shown" not in text
    assert all(item.instance in text for item in plan.instances)
    assert len(plan_rows(plan)) == 19 * 5 + 1  # the frozen one moves only its enforced fix


def test_a_2000_instance_plan_is_cut_to_the_budget_most_urgent_first() -> None:
    plan = big_plan(2000)
    rows = plan_rows(plan)
    assert size(rows) > EVENT_LIMIT  # whole, it would be refused
    text = plan_markdown(plan, run_id="run-7")
    assert len(text.encode()) <= ARTIFACT_BUDGET
    assert "of 2000 instances are not shown here" in text
    assert "GET /rollouts/run-7/deployments?instance=NAME" in text
    # Enforced fixes come before the rest (here every stable instance is one).
    first = text.index("## customer-")
    assert "enforce-security" in text[first : text.index("\n", first)]


@pytest.mark.usefixtures("prefect_server")
def test_big_plan_and_outcome_artifacts_are_stored_within_the_budget() -> None:
    plan = big_plan(2000)
    rows = [
        {"instance": i.instance, "revision": "1", "outcome": "succeeded", "changes": "x" * 300}
        for i in plan.instances
    ]
    rows[-1] = {**rows[-1], "outcome": "failed", "detail": "health check failed"}

    @flow
    def rollout() -> str:
        run_id = str(flow_run.id)
        publish_plan(plan, dry_run=False, run_id=run_id)
        publish_outcomes(rows, summary="1999 succeeded, 1 failed", run_id=run_id)
        return run_id

    run_id = rollout()
    with get_client(sync_client=True) as client:
        found = {
            a.key: a
            for a in client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(
                        any_=["fleet-plan", "fleet-plan-changes", "fleet-rollout-outcome"]
                    )
                ),
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])),
            )
        }
    assert set(found) == {"fleet-plan", "fleet-plan-changes", "fleet-rollout-outcome"}
    for artifact in found.values():
        assert size(artifact.data) <= ARTIFACT_BUDGET + 2048, artifact.key
    assert "not shown" in (found["fleet-plan-changes"].description or "")
    outcome = found["fleet-rollout-outcome"]
    assert "not shown" in (outcome.description or "")
    table = json.loads(outcome.data) if isinstance(outcome.data, str) else outcome.data
    assert table[0]["outcome"] == "failed"  # failures first once cut
