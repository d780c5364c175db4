"""The app in process on a temporary SQLite database holding the example fleet,
with one token per role (named after the role)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from fleet.api import create_app
from fleet.core.fleetfile import parse_fleet_text
from fleet.db.engine import create_all, dispose_engines, get_engine
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


def make_api(tmp_path: Path) -> Iterator[Api]:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    engine = get_engine(url)
    create_all(engine)
    apply_fleet_file(parse_fleet_text(EXAMPLE.read_text()), actor="tests", engine=engine)
    api = Api(TestClient(create_app(Settings(database_url=url))), engine, url, {})
    for role in ROLES:
        api.add_token(role, role)
    with api.client:
        yield api
    dispose_engines()
