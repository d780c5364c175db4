"""Flow tests: a real Prefect server, real agents, a temporary Fleet database."""

from __future__ import annotations

from tests.agent.conftest import start_agent  # noqa: F401  (fixture)
