"""The app in process on a temporary SQLite database holding the example fleet,
with one token per role (named after the role)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from fleet.api import create_app
from fleet.core.fleetfile import parse_fleet_text
from fleet.db.engine import dispose_engines, get_engine, make_engine
from fleet.db.migrate import upgrade
from fleet.services import tokens
from fleet.services.fleet import apply_fleet_file
from fleet.settings import Settings

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fleet.yaml"
ROLES = ("viewer", "operator", "approver", "admin")


@dataclass
class Api:
    client: TestClient
    engine: Engine
    url: str
    secrets: dict[str, str]

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secrets[who]}"}

    def add_token(self, name: str, role: str) -> str:
        _, secret = tokens.create_token(name, role, actor="tests", engine=self.engine)
        self.secrets[name] = secret
        return secret


@lru_cache(maxsize=1)
def _template() -> Path:
    """The example fleet in a migrated database, made once per session and copied."""
    folder = Path(tempfile.mkdtemp(prefix="fleet-api-template-"))
    url = f"sqlite:///{folder / 'fleet.db'}"
    upgrade(url)
    engine = make_engine(url)
    apply_fleet_file(parse_fleet_text(EXAMPLE.read_text()), actor="tests", engine=engine)
    engine.dispose()
    return folder / "fleet.db"


def make_api(tmp_path: Path) -> Iterator[Api]:
    shutil.copyfile(_template(), tmp_path / "fleet.db")
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    engine = get_engine(url)
    api = Api(TestClient(create_app(Settings(database_url=url))), engine, url, {})
    for role in ROLES:
        api.add_token(role, role)
    with api.client:
        yield api
    dispose_engines()
