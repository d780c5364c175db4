"""Schema migrations (Alembic), shipped inside the package.

    upgrade("sqlite:///.fleet/fleet.db")   # what `fleet db upgrade` runs

New revisions: `python -m fleet.db.migrate revision -m "what changed"` against
a database at head autogenerates one from the tables in `fleet.db.models`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from fleet.db.engine import make_engine

__all__ = ["alembic_config", "current_revision", "head_revision", "upgrade"]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision` (default: the newest)."""
    command.upgrade(alembic_config(url), revision)


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "revision" and argv[1] == "-m":
        url = "sqlite:///" + str(Path(".fleet") / "migrations-scratch.db")
        engine = make_engine(url)
        engine.dispose()
        upgrade(url)
        command.revision(alembic_config(url), message=argv[2], autogenerate=True)
        return 0
    print("usage: python -m fleet.db.migrate revision -m MESSAGE", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))


def require_current(engine: Engine) -> None:
    """Refuse to work on a database that is not at the newest schema revision."""
    from fleet.core.errors import FleetError

    where = engine.url.render_as_string(hide_password=True)
    try:
        current = current_revision(engine)
    except Exception as exc:
        raise FleetError(f"Cannot open Fleet's database {where}: {exc}") from exc
    if current is None:
        raise FleetError(f"Fleet's database {where} is not set up: run `fleet init`")
    if current != head_revision():
        raise FleetError(
            f"Fleet's database {where} is at schema {current}, not {head_revision()}: "
            "run `fleet db upgrade`"
        )
