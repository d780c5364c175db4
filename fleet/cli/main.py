"""Entry point of the `fleet` command: one sub-command module per domain.

Each module in `COMMANDS` has `register(subparsers)`, which adds its
sub-commands and sets `func(args) -> int` on each parser.
Exit codes: 0 success, 1 failure of the operation, 2 bad input.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from fleet.core.errors import FleetError, InputError

COMMANDS: tuple[str, ...] = (
    "fleet.cli.agent",
    "fleet.cli.artifacts",
    "fleet.cli.blocks",
    "fleet.cli.plan",
    "fleet.cli.validate",
    "fleet.cli.db",
    "fleet.cli.apply",
    "fleet.cli.pins",
    "fleet.cli.advisories",
    "fleet.cli.risk",
    "fleet.cli.history",
    "fleet.cli.audit",
    "fleet.cli.setup",
    "fleet.cli.tokens",
    "fleet.cli.approvals",
    "fleet.cli.api",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fleet",
        description="Decide which component versions every customer instance runs, and roll out.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module_name in COMMANDS:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except InputError as exc:
        print(f"fleet: error: {exc}", file=sys.stderr)
        return 2
    except FleetError as exc:
        print(f"fleet: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
