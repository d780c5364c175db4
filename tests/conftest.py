import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# `tests.factories` and the top-level Prefect packages (flows/, tasks/, blocks/)
# import from the repository root.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """One temporary Prefect server for the whole session (it takes seconds to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def fleet_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh SQLite Fleet database, made the default for the services."""
    from fleet.db.engine import create_all, dispose_engines, get_engine
    from fleet.settings import get_settings

    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    monkeypatch.setenv("FLEET_DATABASE_URL", url)
    get_settings.cache_clear()
    create_all(get_engine(url))
    yield url
    dispose_engines()
    get_settings.cache_clear()
