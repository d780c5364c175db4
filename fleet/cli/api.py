"""`fleet api serve`: the REST API."""

from __future__ import annotations

import argparse
import os
from typing import Any

from fleet.core.errors import InputError
from fleet.settings import get_settings

__all__ = ["register"]


def register(sub: Any) -> None:
    api = sub.add_parser("api", help="Fleet's REST API")
    api_sub = api.add_subparsers(dest="api_command", metavar="ACTION")
    api_sub.required = True
    serve = api_sub.add_parser(
        "serve",
        help="serve the REST API",
        description="Serve the REST API on the settings' database (FLEET_DATABASE_URL or "
        "FLEET_HOME). Every route but /health needs a token from 'fleet tokens create'.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    serve.add_argument(
        "--workers", type=int, default=1, help="worker processes (default 1; one per core)"
    )
    serve.add_argument(
        "--threads",
        type=int,
        default=None,
        help="worker threads per process for database and Prefect calls "
        "(default FLEET_API_THREADS or 4)",
    )
    serve.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from fleet.api.server import serve
    from fleet.cli._db import database

    if not 0 <= args.port <= 65535:
        raise InputError(f"Invalid --port: {args.port!r} (0-65535)")
    if args.workers < 1:
        raise InputError(f"Invalid --workers: {args.workers!r} (at least 1)")
    if args.workers > 1 and args.port == 0:
        raise InputError(f"Invalid --port: 0 with --workers {args.workers} (name a port)")
    if args.threads is not None:
        if not 1 <= args.threads <= 256:
            raise InputError(f"Invalid --threads: {args.threads!r} (1-256)")
        os.environ["FLEET_API_THREADS"] = str(args.threads)  # read by every worker
        get_settings.cache_clear()
    database()  # the database must be set up and current before serving
    return serve(args.host, args.port, workers=args.workers)
