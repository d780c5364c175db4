"""Flow tests: a real Prefect server, real agents, a temporary Fleet database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.db.engine import create_all, dispose_engines, get_engine
from fleet.settings import get_settings
from tests.agent.conftest import start_agent  # noqa: F401  (fixture)


@pytest.fixture
def fleet_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh SQLite Fleet database, made the default for the services."""
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    monkeypatch.setenv("FLEET_DATABASE_URL", url)
    get_settings.cache_clear()
    create_all(get_engine(url))
    yield url
    dispose_engines()
    get_settings.cache_clear()
