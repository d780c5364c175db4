"""`fleet risk accept`: a time-limited risk acceptance for one instance and advisory."""

from __future__ import annotations

import argparse
from typing import Any

from fleet.cli._db import actor_of, add_actor, database, parse_time
from fleet.core.durations import isoformat
from fleet.services.advisories import accept_risk

__all__ = ["register"]


def register(sub: Any) -> None:
    risk = sub.add_parser("risk", help="risk acceptances")
    risk_sub = risk.add_subparsers(dest="risk_command", metavar="COMMAND")
    risk_sub.required = True
    accept = risk_sub.add_parser(
        "accept",
        help="suspend enforcement of one advisory on one instance until a time",
    )
    accept.add_argument("--instance", required=True)
    accept.add_argument("--advisory", required=True, help="advisory id, e.g. GHSA-...")
    accept.add_argument("--reason", required=True)
    accept.add_argument("--until", required=True, metavar="ISO-8601")
    add_actor(accept)
    accept.set_defaults(func=_accept)


def _accept(args: argparse.Namespace) -> int:
    until = parse_time(args.until, option="--until")
    actor = actor_of(args)
    accept_risk(
        args.instance,
        args.advisory,
        reason=args.reason,
        until=until,
        actor=actor,
        engine=database(),
    )
    print(
        f"risk of {args.advisory} on {args.instance} accepted by {actor} until {isoformat(until)}"
    )
    return 0
