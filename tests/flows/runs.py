"""Helpers for flow tests: run a flow in a thread, find its paused run, read its form."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType

from flows._rollout import Strategy

FAST = Strategy(retries=8, retry_delay_seconds=0.05, approval_poll_seconds=1, halt_after="100%")


def run_in_thread(fn: Callable[..., Any], **params: Any) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn(**params)
        except BaseException as exc:  # the test reads it
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def paused_run(flow_name: str, timeout: float = 60) -> str:
    """The id of the paused run of `flow_name` (there is one at a time in a test)."""
    deadline = time.monotonic() + timeout
    paused = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
    )
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            # Paused runs only: the session's server holds hundreds of runs by now.
            for run in client.read_flow_runs(flow_run_filter=paused, limit=200):
                if run.state and run.state.is_paused() and run.name.startswith(flow_name):
                    return str(run.id)
            time.sleep(0.2)
    raise AssertionError(f"no paused {flow_name} run")


def form_description(run_id: str) -> str:
    """The Markdown the Resume form of the paused run shows."""
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run_id).state
        assert state is not None and state.state_details.run_input_keyset is not None
        key = state.state_details.run_input_keyset["description"]
        return str(client.read_flow_run_input(run_id, key))
