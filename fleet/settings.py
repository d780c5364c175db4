"""Fleet's settings: one pydantic-settings class, read from `FLEET_*` variables.

`get_settings()` is cached; tests set the environment (or build a
`Settings(...)` and pass it on) instead of patching module globals, and call
`get_settings.cache_clear()` when they changed the environment.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "get_settings"]


class Settings(BaseSettings):
    """Where Fleet keeps its data, and how the API serves it."""

    model_config = SettingsConfigDict(env_prefix="FLEET_", extra="ignore")

    home: Path = Field(default=Path(".fleet"), description="Fleet's data directory (FLEET_HOME).")
    database_url: str | None = Field(
        default=None,
        description=(
            "Any SQLAlchemy URL (FLEET_DATABASE_URL), e.g. "
            "postgresql+psycopg://user@host/fleet; default: a SQLite file under home."
        ),
    )

    api_threads: int = Field(
        default=4,
        ge=1,
        le=256,
        description=(
            "Worker threads per API process for database and Prefect calls "
            "(FLEET_API_THREADS); `fleet api serve --threads`."
        ),
    )

    console_session_hours: float = Field(
        default=8,
        gt=0,
        le=24 * 30,
        description="How long a console sign-in lasts (FLEET_CONSOLE_SESSION_HOURS).",
    )
    console_url: str | None = Field(
        default=None,
        max_length=500,
        description=(
            "Where people reach Fleet's console, e.g. https://fleet.internal "
            "(FLEET_CONSOLE_URL): the approval form and notifications link there."
        ),
    )

    zombie_after_seconds: int = Field(
        default=90,
        ge=40,
        le=86_400,
        description=(
            "How long a flow run may go without a heartbeat before `fleet setup`'s "
            "automation marks it Crashed (FLEET_ZOMBIE_AFTER_SECONDS); flow processes "
            "beat every 30 s, so keep it well above that."
        ),
    )

    witness_file: Path | None = Field(
        default=None,
        description=(
            "An append-only file (ideally on another host) to which the audit chain's "
            "head is published, one JSON line per head (FLEET_WITNESS_FILE); "
            "`fleet audit verify --witnesses` checks the chain against it."
        ),
    )

    def console_link(self, path: str) -> str | None:
        """The console's address of `path` (e.g. `/console/approvals/ID`), if it is known."""
        if not self.console_url:
            return None
        return self.console_url.rstrip("/") + "/" + path.lstrip("/")

    @property
    def url(self) -> str:
        """The database URL in effect."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'fleet.db').as_posix()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
