"""`fleet apply FILE` and `fleet export`: the fleet file in and out of the database."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from fleet.cli._db import actor_of, add_actor, database
from fleet.cli._files import load_fleet_file
from fleet.core.errors import FleetFileError
from fleet.services.fleet import apply_fleet_file, export_fleet_file

__all__ = ["register"]


def register(sub: Any) -> None:
    apply = sub.add_parser(
        "apply",
        help="make the database describe a fleet file (only differences are written)",
        description=(
            "Declarative upsert: objects in FILE are created or updated, objects missing "
            "from it stay unless --prune is given. Applying the same file twice changes "
            "nothing. An invalid file changes nothing (exit 2)."
        ),
    )
    apply.add_argument("file", metavar="FILE", help="fleet file (YAML or JSON)")
    apply.add_argument(
        "--prune",
        action="store_true",
        help="also remove what FILE does not list (instances are retired; history stays)",
    )
    add_actor(apply)
    apply.set_defaults(func=_apply)

    export = sub.add_parser(
        "export",
        help="write the database's fleet as a fleet file",
        description="Write the fleet as a fleet file; `fleet apply` of it changes nothing.",
    )
    export.add_argument("--format", choices=("yaml", "json"), default="yaml")
    export.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")
    export.set_defaults(func=_export)


def _apply(args: argparse.Namespace) -> int:
    try:
        fleet = load_fleet_file(args.file)
    except FleetFileError as exc:
        for problem in exc.problems:
            print(f"{args.file}: {problem}", file=sys.stderr)
        return 2
    engine = database()
    try:
        result = apply_fleet_file(fleet, actor=actor_of(args), prune=args.prune, engine=engine)
    except FleetFileError as exc:
        for problem in exc.problems:
            print(f"{args.file}: {problem}", file=sys.stderr)
        return 2
    print(f"{args.file}: {result.summary()} ({result.audit_events} audit events)")
    for change in result.changes:
        print(f"  {change.action:8} {change.subject}")
    for note in result.notes:
        print(f"  note: {note}")
    return 0


def _export(args: argparse.Namespace) -> int:
    data = export_fleet_file(engine=database()).to_data()
    if args.format == "json":
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    else:
        text = "# Fleet file exported from Fleet's database\n" + yaml.safe_dump(
            data, sort_keys=False, allow_unicode=True, width=100
        )
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0
