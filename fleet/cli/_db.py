"""What the database commands share: the engine, the actor, times."""

from __future__ import annotations

import argparse
import getpass
from datetime import datetime

from sqlalchemy import Engine

from fleet.core.durations import parse_instant
from fleet.core.identity import check_identity
from fleet.db.engine import get_engine
from fleet.db.migrate import require_current

__all__ = ["actor_of", "add_actor", "database", "parse_time"]


def database() -> Engine:
    """The settings' database, which must be set up and current."""
    engine = get_engine()
    require_current(engine)
    return engine


def _default_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def add_actor(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--actor",
        default=None,
        metavar="NAME",
        help="who is making the change, for the audit chain (default: the OS user)",
    )


def actor_of(args: argparse.Namespace) -> str:
    """`--actor` (or the OS user) trimmed, when it can be a person's name; else
    `InvalidIdentity`, an input error (exit code 2)."""
    actor = args.actor if args.actor is not None else _default_actor()
    return check_identity(actor, kind="--actor")


def parse_time(text: str, *, option: str) -> datetime:
    """An ISO 8601 time with a zone, for options such as `--until`."""
    return parse_instant(text, what=f"{option} time")
