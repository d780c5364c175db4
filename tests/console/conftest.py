"""Console tests: the app in process on a copy of the example fleet (one token per
role, named after it) and the session's Prefect server (the pages ask it which
runs wait for approval)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.support import Api, make_api


@pytest.fixture
def api(tmp_path: Path, prefect_server: None) -> Iterator[Api]:
    yield from make_api(tmp_path)
