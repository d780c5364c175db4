"""`fleet init` and `fleet db upgrade`: a ready database, and schema migrations."""

from __future__ import annotations

import argparse
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from fleet.core.errors import FleetError
from fleet.db.engine import get_engine
from fleet.db.migrate import current_revision, head_revision, upgrade
from fleet.settings import get_settings

__all__ = ["register"]


def register(sub: Any) -> None:
    init = sub.add_parser(
        "init",
        help="create Fleet's database (or bring it up to date)",
        description=(
            "Create Fleet's database at FLEET_DATABASE_URL (default: a SQLite file under "
            "FLEET_HOME, ./.fleet) with every table, ready for `fleet apply`."
        ),
    )
    init.set_defaults(func=_upgrade)
    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", metavar="COMMAND")
    db_sub.required = True
    up = db_sub.add_parser("upgrade", help="apply the schema migrations not yet applied")
    up.set_defaults(func=_upgrade)


def _upgrade(args: argparse.Namespace) -> int:
    url = get_settings().url
    try:
        upgrade(url)
    except SQLAlchemyError as exc:
        where = make_url(url).render_as_string(hide_password=True)
        raise FleetError(f"Cannot migrate Fleet's database {where}: {exc}") from exc
    engine = get_engine(url)
    where = engine.url.render_as_string(hide_password=True)
    print(f"database {where} at schema {current_revision(engine)} (newest {head_revision()})")
    return 0
