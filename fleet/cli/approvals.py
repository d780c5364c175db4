"""`fleet approvals code RUN_ID`: a one-time code to approve in the Prefect UI, verified.

The command acts as the principal of an API token (the holder's identity in
approvals and the audit chain, as on the REST API): `--token-file`, else the
`FLEET_TOKEN` variable. The token is checked against Fleet's database and
must grant `approver`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from fleet.cli._db import database
from fleet.core.durations import isoformat
from fleet.core.errors import InputError, PermissionDenied
from fleet.services import codes, tokens

__all__ = ["register"]

TOKEN_VARIABLE = "FLEET_TOKEN"


def register(sub: Any) -> None:
    parser = sub.add_parser("approvals", help="approve waiting runs")
    approvals_sub = parser.add_subparsers(dest="approvals_command", metavar="COMMAND")
    approvals_sub.required = True
    code = approvals_sub.add_parser(
        "code",
        help="a one-time code to approve or reject a run in the Prefect UI's form, verified",
        description="Prints a code bound to RUN_ID and to the token's holder, valid "
        f"{int(codes.CODE_LIFETIME.total_seconds() // 60)} minutes, usable once. Paste it "
        "into the Code field of the run's Resume form: the decision is then taken as the "
        f"token's holder (verified). The token: --token-file, else ${TOKEN_VARIABLE}.",
    )
    code.add_argument("run_id", metavar="RUN_ID", help="the waiting flow run's id")
    code.add_argument("--token-file", type=Path, default=None, help="file holding your API token")
    code.set_defaults(func=_code)


def _token(args: argparse.Namespace) -> str:
    if args.token_file is not None:
        try:
            return str(args.token_file.read_text(encoding="utf-8")).strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"Cannot read --token-file {str(args.token_file)!r}: {exc}") from None
    secret = os.environ.get(TOKEN_VARIABLE, "").strip()
    if not secret:
        raise InputError(f"No API token: give --token-file or set {TOKEN_VARIABLE}")
    return secret


def _code(args: argparse.Namespace) -> int:
    secret = _token(args)
    engine = database()
    principal = tokens.authenticate(secret, engine=engine)
    if principal is None:
        raise PermissionDenied("Invalid or revoked token")
    issued = codes.issue_code(args.run_id, principal=principal, engine=engine)
    print(issued.code)
    print(
        f"one-time code for {issued.principal} on run {issued.flow_run_id}, valid until "
        f"{isoformat(issued.expires_at)}, usable once: paste it into the run's Resume form "
        "(Code)",
        file=sys.stderr,
    )
    return 0
