"""`fleet tokens create|list|revoke`: API tokens."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from fleet.cli._db import actor_of, add_actor, database
from fleet.core.durations import isoformat
from fleet.services import tokens

__all__ = ["register"]


def register(sub: Any) -> None:
    parser = sub.add_parser("tokens", help="API tokens (who may call the REST API, as what)")
    tokens_sub = parser.add_subparsers(dest="tokens_command", metavar="COMMAND")
    tokens_sub.required = True

    create = tokens_sub.add_parser(
        "create",
        help="create a token and print it (once: only its hash is stored)",
        description="Roles: viewer (read), operator (rollouts, rollbacks, pins, versions), "
        "approver (approve or reject), admin (everything: channels, policies, tokens, risk "
        "acceptances). The name is the principal's identity in approvals and the audit chain.",
    )
    create.add_argument("--name", required=True, help="who holds it, e.g. alice or ci-pipeline")
    create.add_argument("--role", required=True, help=", ".join(r.value for r in tokens.Role))
    add_actor(create)
    create.set_defaults(func=_create)

    show = tokens_sub.add_parser("list", help="list tokens (never their secrets)")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=_list)

    revoke = tokens_sub.add_parser("revoke", help="revoke a token at once")
    revoke.add_argument("name", metavar="NAME")
    add_actor(revoke)
    revoke.set_defaults(func=_revoke)


def _create(args: argparse.Namespace) -> int:
    stored, secret = tokens.create_token(
        args.name, args.role, actor=actor_of(args), engine=database()
    )
    print(secret)
    print(
        f"token {stored.name!r} ({stored.role.value}) created; this is the only time it is shown",
        file=sys.stderr,
    )
    return 0


def _list(args: argparse.Namespace) -> int:
    found = tokens.list_tokens(engine=database())
    if args.json:
        json.dump([t.to_json() for t in found], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if not found:
        print("no tokens")
        return 0
    for t in found:
        state = "active" if t.revoked_at is None else f"revoked {isoformat(t.revoked_at)}"
        print(f"{t.name:30} {t.role.value:9} created {isoformat(t.created_at)}  {state}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    tokens.revoke_token(args.name, actor=actor_of(args), engine=database())
    print(f"token {args.name!r} revoked")
    return 0
