"""`fleet setup` (the Prefect workspace, idempotent) and `fleet serve` (every flow
with its schedule in one process, for the embedded set-up without workers)."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    setup = sub.add_parser(
        "setup",
        help="create the work pool, block types, and the crash and approval automations",
    )
    setup.add_argument(
        "--pool-limit", type=int, default=None, help="concurrent flow runs in the work pool"
    )
    setup.add_argument(
        "--notify",
        metavar="SLUG/NAME",
        default=None,
        help="notification block (e.g. slack-webhook/ops) told when a run waits for approval",
    )
    setup.set_defaults(func=_setup)
    serve = sub.add_parser("serve", help="serve every Fleet flow with its schedule (no worker)")
    serve.add_argument("--limit", type=int, default=None, help="concurrent runs")
    serve.set_defaults(func=_serve)


def _setup(args: argparse.Namespace) -> int:
    from deployments.setup import setup

    for step in setup(pool_limit=args.pool_limit, notification_block=args.notify):
        print(step)
    return 0


def _serve(args: argparse.Namespace) -> int:  # pragma: no cover - runs until stopped
    from deployments.serve import serve

    serve(limit=args.limit)
    return 0
