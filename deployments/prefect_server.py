"""The settings Fleet starts its Prefect server with.

A rollout sends Prefect's server a burst of events: three task-run state
changes per instance, plus lock and block events. By default the server's
task-run recorder writes each task-run event in its own database
transaction, and the event persister writes 20 events at a time; under a
200-instance rollout the server then spent more CPU on transactions than on
the events, and the API requests every task run makes (its tag concurrency
check) queued behind them. Larger batches, flushed at least once a second,
cut the server's CPU for the same rollout by about a fifth
(`bench/rollout.py`); a task run's final state reaches the UI within a
second.

Set them in the environment of `prefect server start` (`server_env()`), or in
a Prefect profile for a server started another way.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["SERVER_SETTINGS", "server_env"]

SERVER_SETTINGS: Mapping[str, str] = {
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": "200",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}


def server_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (default: this process's environment) with Fleet's server settings;
    a setting already in `base` stands, so an operator can override any of them."""
    env = dict(os.environ if base is None else base)
    for name, value in SERVER_SETTINGS.items():
        env.setdefault(name, value)
    return env
