"""Both database backends for these tests (see tests/db/support.py)."""

from tests.db.support import _pg_session_url, _sqlite_template, cli_db, db_url, engine

__all__ = ["_pg_session_url", "_sqlite_template", "cli_db", "db_url", "engine"]
