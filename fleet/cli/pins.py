"""`fleet pins add|remove|expire|list`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from fleet.cli._db import actor_of, add_actor, database, parse_time
from fleet.core.durations import isoformat
from fleet.services.pins import add_pin, expire_pin, list_pins, remove_pin

__all__ = ["register"]


def register(sub: Any) -> None:
    pins = sub.add_parser("pins", help="version pins (global, per channel, per instance)")
    pins_sub = pins.add_subparsers(dest="pins_command", metavar="COMMAND")
    pins_sub.required = True

    add = pins_sub.add_parser("add", help="add a pin")
    add.add_argument("--scope", required=True, help="global, channel:NAME or instance:NAME")
    add.add_argument("--component", required=True)
    add.add_argument("--spec", required=True, help="a version specifier such as '<3' or '==2.3.*'")
    add.add_argument("--reason", required=True, help="why (shown in every plan it affects)")
    add.add_argument("--expires", metavar="ISO-8601", help="when the pin lapses (default: never)")
    add_actor(add)
    add.set_defaults(func=_add)

    remove = pins_sub.add_parser("remove", help="remove a pin (the audit chain keeps it)")
    remove.add_argument("id", type=int, metavar="ID")
    add_actor(remove)
    remove.set_defaults(func=_remove)

    expire = pins_sub.add_parser("expire", help="let a pin lapse now")
    expire.add_argument("id", type=int, metavar="ID")
    add_actor(expire)
    expire.set_defaults(func=_expire)

    show = pins_sub.add_parser("list", help="list the pins")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=_list)


def _add(args: argparse.Namespace) -> int:
    expires = None if args.expires is None else parse_time(args.expires, option="--expires")
    stored = add_pin(
        args.scope,
        args.component,
        args.spec,
        reason=args.reason,
        actor=actor_of(args),
        expires_at=expires,
        engine=database(),
    )
    print(f"pin {stored.id} added: {stored.pin.describe()}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    remove_pin(args.id, actor=actor_of(args), engine=database())
    print(f"pin {args.id} removed")
    return 0


def _expire(args: argparse.Namespace) -> int:
    expire_pin(args.id, actor=actor_of(args), engine=database())
    print(f"pin {args.id} expired")
    return 0


def _list(args: argparse.Namespace) -> int:
    pins = list_pins(engine=database())
    if args.json:
        json.dump([p.to_json() for p in pins], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if not pins:
        print("no pins")
        return 0
    for stored in pins:
        p = stored.pin
        expires = "never" if p.expires_at is None else isoformat(p.expires_at)
        print(
            f"{stored.id:>4}  {p.scope!s:24} {p.component}{p.spec}  expires {expires}  "
            f"by {p.author}: {p.reason}"
        )
    return 0
