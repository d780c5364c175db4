"""`fleet audit verify|export|log|report`: the tamper-evident audit chain."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fleet.cli._db import database, parse_time
from fleet.core.durations import isoformat
from fleet.services.audit import event_json, events, export_jsonl, verify
from fleet.services.reports import audit_report, prefect_ui_url
from fleet.services.witnesses import publish_head, verify_witnesses

__all__ = ["register"]


def register(sub: Any) -> None:
    audit = sub.add_parser("audit", help="the audit chain")
    audit_sub = audit.add_subparsers(dest="audit_command", metavar="COMMAND")
    audit_sub.required = True

    check = audit_sub.add_parser(
        "verify", help="recompute the chain; exit 1 naming the first broken link"
    )
    check.add_argument(
        "--witnesses",
        action="store_true",
        help="also check the chain against every published head (Prefect, witness file): "
        "exit 1 naming a truncated or forked chain",
    )
    _witness_options(check)
    check.set_defaults(func=_verify)

    publish = audit_sub.add_parser(
        "publish-head", help="publish the chain's head to Prefect and the witness file"
    )
    _witness_options(publish)
    publish.set_defaults(func=_publish)

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


def _witness_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--witness-file",
        type=Path,
        metavar="PATH",
        help="the witness file (default: FLEET_WITNESS_FILE, if set)",
    )
    parser.add_argument("--no-prefect", action="store_true", help="leave Prefect's artifacts out")


def _verify(args: argparse.Namespace) -> int:
    if args.witnesses:
        return _verify_witnesses(args)
    verdict = verify(engine=database())
    if verdict.ok:
        print(str(verdict))
        return 0
    print(f"fleet: error: {verdict}", file=sys.stderr)
    return 1


def _verify_witnesses(args: argparse.Namespace) -> int:
    found = verify_witnesses(file=args.witness_file, prefect=not args.no_prefect, engine=database())
    for note in found.notes:
        print(f"fleet: warning: {note}", file=sys.stderr)
    if found.verdict.ok:
        print(str(found.verdict))
    else:
        print(f"fleet: error: {found.verdict}", file=sys.stderr)
    for check in found.problems:
        print(f"fleet: error: {check}", file=sys.stderr)
    agreeing = len(found.checks) - len(found.problems)
    print(f"{len(found.checks)} published head(s) checked, {agreeing} agree with the chain")
    if not found.checks:
        print("fleet: warning: no published head was found to check against", file=sys.stderr)
    return 0 if found.ok else 1


def _publish(args: argparse.Namespace) -> int:
    outcome = publish_head(file=args.witness_file, prefect=not args.no_prefect, engine=database())
    head = outcome.head
    for where in outcome.published:
        print(f"published head {head.seq} ({head.hash}) to {where}")
    for why in outcome.failed:
        print(f"fleet: warning: not published to {why}", file=sys.stderr)
    return 0 if outcome.published else 1


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
