"""`python -m fleet.agent agent serve ...`: the agent without the rest of the `fleet` CLI.

`fleet agent serve` hands over to this entry point (same process, `exec`), so the
agent's memory holds only what the agent imports, not every sub-command's
dependencies.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fleet.cli.agent import register
from fleet.core.errors import FleetError, InputError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fleet")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    register(sub)
    args = parser.parse_args(argv)
    args.lean = True
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
