"""`fleet advisories import FILE --component-map PKG=COMPONENT`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fleet.cli._db import actor_of, add_actor, database
from fleet.core.advisories import Severity
from fleet.core.errors import InputError
from fleet.services.advisories import import_osv

__all__ = ["register"]


def register(sub: Any) -> None:
    advisories = sub.add_parser("advisories", help="security advisories")
    adv_sub = advisories.add_subparsers(dest="advisories_command", metavar="COMMAND")
    adv_sub.required = True
    imp = adv_sub.add_parser(
        "import",
        help="import OSV JSON (one record, a list, or an OSV API answer)",
        description=(
            "Store the advisories of OSV records; each affected package is mapped to a "
            "component with --component-map. Re-importing a modified record updates it. "
            "An unmapped package or unknown component changes nothing (exit 2)."
        ),
    )
    imp.add_argument("file", metavar="FILE", help="OSV JSON file")
    imp.add_argument(
        "--component-map",
        action="append",
        default=[],
        metavar="PKG=COMPONENT",
        help="map an OSV package name to a component (repeatable)",
    )
    imp.add_argument(
        "--default-severity",
        choices=[s.value for s in Severity],
        help="severity of records that state none",
    )
    add_actor(imp)
    imp.set_defaults(func=_import)


def _mapping(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        package, sep, component = item.partition("=")
        if not sep or not package.strip() or not component.strip():
            raise InputError(f"Invalid --component-map: {item!r} (expected PKG=COMPONENT)")
        out[package.strip()] = component.strip()
    return out


def _import(args: argparse.Namespace) -> int:
    try:
        data = json.loads(Path(args.file).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"No such OSV file: {args.file!r}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"Cannot read OSV JSON from {args.file!r}: {exc}") from None
    severity = None if args.default_severity is None else Severity(args.default_severity)
    result = import_osv(
        data,
        _mapping(args.component_map),
        actor=actor_of(args),
        default_severity=severity,
        engine=database(),
    )
    print(f"{args.file}: {result.summary()}")
    for label in result.created:
        print(f"  created  {label}")
    for label in result.updated:
        print(f"  updated  {label}")
    return 0
