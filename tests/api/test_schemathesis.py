"""Schemathesis against the app's own OpenAPI schema, in process (ASGI): no 5xx,
every status documented, every response of the documented type and shape.

Calls carry an admin token, so every route is reached past authentication
(the auth matrix covers the other roles). Examples are bounded to keep the
run short.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from fleet.api import create_app
from fleet.settings import Settings
from tests.api.support import Api, make_api

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
MAX_EXAMPLES = int(os.environ.get("FLEET_SCHEMATHESIS_EXAMPLES", "25"))


# The schema is read from the app at import (no database needed for that); the
# database behind it is filled by the fixture before the first call.
_FOLDER = Path(tempfile.mkdtemp(prefix="fleet-schemathesis-"))
_APP = create_app(Settings(database_url=f"sqlite:///{_FOLDER / 'fleet.db'}"))
schema = schemathesis.openapi.from_asgi("/openapi.json", _APP)


@pytest.fixture(scope="module")
def module_api(prefect_server: None) -> Iterator[Api]:
    try:
        yield from make_api(_FOLDER)
    finally:
        shutil.rmtree(_FOLDER, ignore_errors=True)


@schema.parametrize()
# Hypothesis notices any change of the `random` module's state while it draws a
# case; Prefect's background workers (events, logs) in this process use `random`
# on their own threads, so the notice fires at random and says nothing about
# the schema (it made this test flaky).
@pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_the_api_meets_its_own_schema(case: schemathesis.Case, module_api: Api) -> None:
    case.call_and_validate(headers=module_api.auth("admin"), checks=CHECKS)
