"""`fleet validate FILE`: check a fleet file and list every problem at once."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from fleet.cli._files import load_fleet_file
from fleet.core.errors import FleetFileError

__all__ = ["register"]


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "validate",
        help="check a fleet file (YAML or JSON); exit 2 listing every problem",
        description="Check a fleet file and print a summary, or every problem, one per line.",
    )
    parser.add_argument("file", metavar="FILE", help="fleet file (YAML or JSON)")
    parser.set_defaults(func=_validate)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _validate(args: argparse.Namespace) -> int:
    try:
        fleet = load_fleet_file(args.file)
    except FleetFileError as exc:
        print(f"{args.file}: {_plural(len(exc.problems), 'problem')}", file=sys.stderr)
        for problem in exc.problems:
            print(f"{args.file}: {problem}", file=sys.stderr)
        return 2
    counts = ", ".join(
        [
            _plural(len(fleet.components), "component"),
            _plural(len(fleet.versions), "version"),
            _plural(len(fleet.channels), "channel"),
            _plural(len(fleet.instances), "instance"),
            _plural(len(fleet.pins), "pin"),
            _plural(len(fleet.advisories), "advisory").replace("advisorys", "advisories"),
            _plural(len(fleet.risk_acceptances), "risk acceptance"),
        ]
    )
    print(f"{args.file}: valid fleet file: {counts}")
    return 0
