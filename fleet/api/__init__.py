"""Fleet's REST API (FastAPI): `create_app()`, one router per domain."""

from fleet.api.app import create_app

__all__ = ["create_app"]
