"""Schema, migrations, settings and column types."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, insert, select

from fleet.core.errors import FleetError
from fleet.db.engine import make_engine, transaction
from fleet.db.migrate import current_revision, head_revision, require_current
from fleet.db.models import PinRow, metadata, table_of
from fleet.settings import Settings
from tests.db.support import create_pg_database, drop_pg_database


def test_migrations_produce_the_tables_schema(engine: Engine) -> None:
    # The test databases are built by running the migrations.
    assert current_revision(engine) == head_revision()
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_a_database_without_tables_asks_for_init(backend: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}" if backend == "sqlite" else create_pg_database()
    engine = make_engine(url)
    try:
        with pytest.raises(FleetError, match="fleet init"):
            require_current(engine)
    finally:
        engine.dispose()
        if backend == "postgres":
            drop_pg_database(url)


def test_times_are_stored_in_utc_and_read_back_aware(engine: Engine) -> None:
    pin = table_of(PinRow)
    berlin = timezone(timedelta(hours=1))
    created = datetime(2026, 11, 26, 13, 0, 0, 123456, tzinfo=berlin)
    with transaction(engine) as session:
        session.execute(
            insert(pin),
            [
                {
                    "scope": "global",
                    "component": "api",
                    "spec": "<3",
                    "reason": "r",
                    "author": "a",
                    "created_at": created,
                }
            ],
        )
    with transaction(engine) as session:
        stored = session.execute(select(pin.c.created_at)).scalar_one()
    assert stored == created
    assert stored.tzinfo is not None and stored.utcoffset() == timedelta(0)


def test_naive_times_are_refused(engine: Engine) -> None:
    row = {"scope": "global", "component": "api", "spec": "<3", "reason": "r", "author": "a"}
    with pytest.raises(Exception, match="naive datetime"), transaction(engine) as session:
        session.execute(insert(table_of(PinRow)), [{**row, "created_at": datetime(2026, 1, 1)}])


def test_settings_default_to_a_sqlite_file_under_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLEET_DATABASE_URL", raising=False)
    monkeypatch.delenv("FLEET_HOME", raising=False)
    assert Settings().url == "sqlite:///.fleet/fleet.db"
    monkeypatch.setenv("FLEET_HOME", "/srv/fleet")
    assert Settings().url == "sqlite:////srv/fleet/fleet.db"
    monkeypatch.setenv("FLEET_DATABASE_URL", "postgresql+psycopg://fleet@db/fleet")
    assert Settings().url == "postgresql+psycopg://fleet@db/fleet"
    assert Settings(database_url="sqlite://").url == "sqlite://"


def test_sqlite_creates_the_directory_of_its_file(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'deep' / 'er' / 'fleet.db'}")
    with engine.connect():
        pass
    engine.dispose()
    assert (tmp_path / "deep" / "er" / "fleet.db").exists()
