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

# Each module and the commands it registers. A command given on the line
# imports its own module only: `fleet plan` need not load the database layer.
COMMANDS: dict[str, tuple[str, ...]] = {
    "fleet.cli.agent": ("agent",),
    "fleet.cli.artifacts": ("artifacts",),
    "fleet.cli.blocks": ("blocks",),
    "fleet.cli.plan": ("plan",),
    "fleet.cli.validate": ("validate",),
    "fleet.cli.db": ("init", "db"),
    "fleet.cli.apply": ("apply", "export"),
    "fleet.cli.pins": ("pins",),
    "fleet.cli.advisories": ("advisories",),
    "fleet.cli.risk": ("risk",),
    "fleet.cli.history": ("history",),
    "fleet.cli.audit": ("audit",),
    "fleet.cli.setup": ("setup", "serve"),
    "fleet.cli.tokens": ("tokens",),
    "fleet.cli.approvals": ("approvals",),
    "fleet.cli.api": ("api",),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of `command` alone when it is one."""
    parser = argparse.ArgumentParser(
        prog="fleet",
        description="Decide which component versions every customer instance runs, and roll out.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    modules = [m for m, names in COMMANDS.items() if command in names] or list(COMMANDS)
    for module_name in modules:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(words[0] if words else None)
    args = parser.parse_args(words)
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
