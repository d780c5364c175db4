"""Databases for the tests: a fresh SQLite file and a real PostgreSQL database.

Every test that takes `db_url` runs twice, against SQLite and against the
PostgreSQL server on 127.0.0.1:5432. The PostgreSQL database is created once
per session with a unique name (migrated to the newest schema) and dropped at
the end; each test starts from empty tables. When the server cannot be
reached the PostgreSQL variants fail: they never skip.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, select, text

from fleet.db.audit import chain_head, count_events
from fleet.db.engine import dispose_engines, make_engine, transaction
from fleet.db.migrate import upgrade
from fleet.db.models import metadata
from fleet.services.fleet import export_fleet_file
from fleet.settings import get_settings

PG_HOST = os.environ.get("FLEET_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("FLEET_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("FLEET_TEST_PG_USER", "postgres")
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


def _admin() -> psycopg.Connection[Any]:
    return psycopg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", autocommit=True
    )


def create_pg_database() -> str:
    """A new, empty, uniquely named database; returns its SQLAlchemy URL."""
    name = f"fleet_test_{uuid.uuid4().hex[:12]}"
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"


def drop_pg_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    dispose_engines()
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def _pg_session_url() -> Iterator[str]:
    url = create_pg_database()
    try:
        upgrade(url)
        yield url
    finally:
        drop_pg_database(url)


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "fleet.db"
    upgrade(f"sqlite:///{path}")
    dispose_engines()
    return path


def _empty_tables(url: str) -> None:
    engine = make_engine(url)
    try:
        names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY"))
    finally:
        engine.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty Fleet database at the newest schema, on each backend."""
    if request.param == "sqlite":
        path = tmp_path / "fleet.db"
        shutil.copy(request.getfixturevalue("_sqlite_template"), path)
        yield f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("_pg_session_url")
        _empty_tables(url)
        yield url
    dispose_engines()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def cli_db(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The CLI's database (FLEET_DATABASE_URL) set to `db_url`."""
    monkeypatch.setenv("FLEET_DATABASE_URL", db_url)
    get_settings.cache_clear()
    yield db_url
    get_settings.cache_clear()
    dispose_engines()


def dump(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in key order: equal dumps mean nothing was written."""
    out = {}
    with transaction(engine) as session:
        for table in metadata.sorted_tables:
            key = list(table.primary_key.columns)
            rows = session.execute(select(table).order_by(*key)).all()
            out[table.name] = [tuple(r) for r in rows]
    return out


def snapshot(engine: Engine) -> tuple[Any, ...]:
    """The export, the audit chain's length and head, and every row."""
    with transaction(engine) as session:
        head = chain_head(session)
        count = count_events(session)
    return (export_fleet_file(engine=engine).to_data(), count, head, dump(engine))
