"""Helpers for flow tests: run a flow in a thread, find its paused run, read its form."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import State, StateType
from prefect.exceptions import PrefectHTTPStatusError

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


def form_ready(client: SyncPrefectClient, run_id: Any, state: State) -> bool:
    """Whether a paused run's Resume form can be read: Prefect sets the Paused
    state first and saves the form's schema and description after it."""
    keyset = state.state_details.run_input_keyset
    if keyset is None:
        return True  # a pause without a form
    try:
        client.read_flow_run_input(run_id, keyset["description"])
    except PrefectHTTPStatusError as exc:
        if exc.response.status_code == 404:
            return False
        raise
    return True


def paused_run(flow_name: str, timeout: float = 60) -> str:
    """The id of the paused run of `flow_name`, once its Resume form is saved."""
    deadline = time.monotonic() + timeout
    paused = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
    )
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            # Paused runs only: the session's server holds hundreds of runs by now.
            for run in client.read_flow_runs(flow_run_filter=paused, limit=200):
                state = run.state
                if (
                    state
                    and state.is_paused()
                    and run.name.startswith(flow_name)
                    and form_ready(client, run.id, state)
                ):
                    return str(run.id)
            time.sleep(0.2)
    raise AssertionError(f"no paused {flow_name} run")


def paused_for(run_id: str, key_number: int, timeout: float = 60) -> None:
    """Wait until the run waits on its `approval-<key_number>` form, saved."""
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            state = client.read_flow_run(run_id).state
            if (
                state
                and state.is_paused()
                and state.state_details.pause_key == (f"approval-{key_number}")
                and form_ready(client, run_id, state)
            ):
                return
            if state and state.is_final():
                raise AssertionError(f"run {run_id} ended ({state.name}) instead of waiting")
            time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not wait on form approval-{key_number}")


def form_description(run_id: str) -> str:
    """The Markdown the Resume form of the paused run shows."""
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run_id).state
        assert state is not None and state.state_details.run_input_keyset is not None
        key = state.state_details.run_input_keyset["description"]
        return str(client.read_flow_run_input(run_id, key))
