"""`fleet history INSTANCE`: manifest revisions with status, times, from -> to, the run
that planned each and the runs that deployed it."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from fleet.cli._db import database
from fleet.core.durations import isoformat
from fleet.services.manifests import history

__all__ = ["register"]


def register(sub: Any) -> None:
    parser = sub.add_parser("history", help="an instance's manifest revisions")
    parser.add_argument("instance", metavar="INSTANCE")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=_history)


def _history(args: argparse.Namespace) -> int:
    entries = history(args.instance, engine=database())
    if args.json:
        json.dump([e.to_json() for e in entries], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if not entries:
        print(f"{args.instance}: no manifest revisions")
        return 0
    for entry in entries:
        r = entry.revision
        head = f"r{r.number}  {r.status.value:11} created {isoformat(r.created_at)}"
        if r.deployed_at is not None:
            head += f"  deployed {isoformat(r.deployed_at)}"
        if r.rollback_of is not None:
            head += f"  rollback of r{r.rollback_of}"
        if entry.flow_run_id:
            head += f"  planned by run {entry.flow_run_id}"
        print(head + f"  by {entry.created_by}")
        for run, outcome in entry.deployments:
            print(f"      deploy {outcome} in run {run}")
        for component, (before, after) in entry.changes.items():
            why = r.explanation.get(component, "")
            print(f"      {component}: {before or '(none)'} -> {after or '(none)'}  {why}".rstrip())
    return 0
