"""`fleet audit verify|export|log|report`: the tamper-evident audit chain."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from fleet.cli._db import database, parse_time
from fleet.core.durations import isoformat
from fleet.services.audit import event_json, events, export_jsonl, verify
from fleet.services.reports import audit_report, prefect_ui_url

__all__ = ["register"]


def register(sub: Any) -> None:
    audit = sub.add_parser("audit", help="the audit chain")
    audit_sub = audit.add_subparsers(dest="audit_command", metavar="COMMAND")
    audit_sub.required = True

    check = audit_sub.add_parser(
        "verify", help="recompute the chain; exit 1 naming the first broken link"
    )
    check.set_defaults(func=_verify)

    export = audit_sub.add_parser("export", help="stream every event")
    export.add_argument("--format", choices=("jsonl",), default="jsonl")
    export.set_defaults(func=_export)

    log = audit_sub.add_parser("log", help="show events")
    log.add_argument("--subject", help="e.g. instance:acme-prod (a trailing * matches a prefix)")
    log.add_argument("--since", metavar="ISO-8601", help="only events at or after this time")
    log.add_argument("--json", action="store_true", help="one JSON object per line")
    log.set_defaults(func=_log)

    report = audit_sub.add_parser(
        "report",
        help="what ran on an instance at a time: revision, runs, approvals, advisories, events",
    )
    report.add_argument("instance", metavar="INSTANCE")
    report.add_argument("--at", required=True, metavar="ISO-8601", help="the moment asked about")
    report.add_argument(
        "--format",
        choices=("table", "json", "markdown"),
        default="table",
        help="a table for the terminal (default), JSON, or Markdown to file",
    )
    report.set_defaults(func=_report)


def _verify(args: argparse.Namespace) -> int:
    verdict = verify(engine=database())
    if verdict.ok:
        print(str(verdict))
        return 0
    print(f"fleet: error: {verdict}", file=sys.stderr)
    return 1


def _export(args: argparse.Namespace) -> int:
    export_jsonl(sys.stdout, engine=database())
    return 0


def _log(args: argparse.Namespace) -> int:
    since = None if args.since is None else parse_time(args.since, option="--since")
    for event in events(subject=args.subject, since=since, engine=database()):
        if args.json:
            sys.stdout.write(json.dumps(event_json(event), ensure_ascii=False) + "\n")
            continue
        run = f" run={event.flow_run_id}" if event.flow_run_id else ""
        details = json.dumps(event.details, ensure_ascii=False, sort_keys=True)
        if len(details) > 160:
            details = details[:157] + "..."
        print(
            f"{event.seq:>6} {isoformat(event.at)} {event.actor} {event.action} "
            f"{event.subject}{run} {details}"
        )
    return 0


def _report(args: argparse.Namespace) -> int:
    at = parse_time(args.at, option="--at")
    found = audit_report(args.instance, at=at, prefect_ui=prefect_ui_url(), engine=database())
    if args.format == "json":
        print(json.dumps(found.to_json(), ensure_ascii=False, indent=2))
    elif args.format == "markdown":
        sys.stdout.write(found.to_markdown())
    else:
        sys.stdout.write(found.to_text())
    return 0
