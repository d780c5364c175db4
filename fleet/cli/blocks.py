"""`fleet blocks`: Prefect block types of deploy targets, and target blocks in bulk.

fleet blocks register
    make Fleet's block types known to the Prefect server
fleet blocks add-host URL --token-file F [--instance NAME ... | --instance-count N]
    one FleetAgent block per instance of an agent host (`fleet agent serve
    --multi-instance`), each named after its instance; without instance
    options, every instance the host serves now
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    blocks = sub.add_parser(
        "blocks", help="deploy target blocks: register their types, add an agent host's"
    )
    blocks_sub = blocks.add_subparsers(dest="blocks_command", metavar="ACTION")
    blocks_sub.required = True
    reg = blocks_sub.add_parser("register", help="register the block types with Prefect")
    reg.set_defaults(func=_register)

    host = blocks_sub.add_parser(
        "add-host",
        help="one FleetAgent block per instance of an agent host, named after the instance",
        description=(
            "Save one FleetAgent target block per instance of an agent host serving many "
            "instances (`fleet agent serve --multi-instance`), each named after its instance "
            "(the fleet file's `target:`). Without --instance or --instance-count, the host "
            "is asked which instances it serves. Blocks already holding these settings are "
            "left alone; blocks of these names with other settings are an error unless "
            "--overwrite."
        ),
    )
    host.add_argument("url", help="the host's base URL, e.g. http://host-7.internal:8700")
    host.add_argument(
        "--token-file", type=Path, required=True, help="file with the host's bearer token"
    )
    host.add_argument(
        "--instance", action="append", default=[], metavar="NAME", help="an instance (repeatable)"
    )
    host.add_argument(
        "--instance-count",
        type=int,
        default=0,
        metavar="N",
        help="instances PREFIX-0001 ... PREFIX-N (as `fleet agent serve` names them)",
    )
    host.add_argument(
        "--instance-prefix",
        default="instance",
        metavar="PREFIX",
        help="name prefix for --instance-count (default: instance)",
    )
    host.add_argument(
        "--timeout", type=float, default=300.0, help="the blocks' answer timeout in seconds"
    )
    host.add_argument(
        "--overwrite", action="store_true", help="replace blocks of these names that differ"
    )
    host.set_defaults(func=_add_host)


def _register(args: argparse.Namespace) -> int:
    from blocks import register_block_types

    for slug in register_block_types():
        print(f"registered block type {slug}")
    return 0


def _add_host(args: argparse.Namespace) -> int:
    import math

    import httpx

    from blocks.targets import BlockRegistrationError, save_host_targets
    from fleet.agent.client import AgentClient
    from fleet.agent.errors import AgentConfigError
    from fleet.agent.host import numbered_instances
    from fleet.agent.models import check_instance_name
    from fleet.agent.server import read_token
    from fleet.cli.agent import MAX_INSTANCE_COUNT

    url = args.url.rstrip("/")
    if not url.startswith(("http://", "https://")) or len(url) <= len("https://"):
        raise AgentConfigError(f"Invalid host URL: {args.url!r} (expected http:// or https://)")
    if not math.isfinite(args.timeout) or args.timeout <= 0:
        raise AgentConfigError(f"--timeout must be a positive number, got {args.timeout!r}")
    if not 0 <= args.instance_count <= MAX_INSTANCE_COUNT:
        raise AgentConfigError(
            f"--instance-count must be 0-{MAX_INSTANCE_COUNT}, got {args.instance_count!r}"
        )
    token = read_token(args.token_file)
    names = [check_instance_name(name) for name in args.instance]
    if args.instance_count:
        names += numbered_instances(args.instance_prefix, args.instance_count)
    if not names:
        with AgentClient(url, token, timeout=30.0) as client:
            names = client.instances()
        if not names:
            print(f"{url} serves no instances: no target blocks saved")
            return 0
    t0 = time.monotonic()
    try:
        saved = save_host_targets(url, token, names, timeout=args.timeout, overwrite=args.overwrite)
    except (httpx.HTTPError, OSError) as exc:  # the Prefect server unreachable or refusing
        raise BlockRegistrationError(f"Cannot save target blocks: {exc}") from exc
    print(
        f"target blocks for {len(set(names))} instances of {url}: {saved.created} created, "
        f"{saved.updated} updated, {saved.unchanged} unchanged ({time.monotonic() - t0:.1f} s)"
    )
    return 0
