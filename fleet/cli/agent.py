"""`fleet agent serve`: run the agent beside one instance, or beside many on one host.

fleet agent serve --root DIR --port N --token-file F
    one installation under DIR (`/v1/apply`, `/v1/state`, ...)
fleet agent serve --root DIR --port N --token-file F --multi-instance
    [--instance NAME ...] [--instance-count N [--instance-prefix P]]
    many instances under DIR/instances/ (`/v1/instances/{name}/apply`, ...),
    those named created at start; `--instance-count 2000 --instance-prefix
    customer` serves customer-0001 ... customer-2000
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    agent = sub.add_parser("agent", help="the agent that runs beside an instance")
    agent_sub = agent.add_subparsers(dest="agent_command", metavar="ACTION")
    agent_sub.required = True
    serve = agent_sub.add_parser(
        "serve", help="serve the agent API for one installation, or many instances on a host"
    )
    serve.add_argument(
        "--root",
        type=Path,
        required=True,
        help="installation directory (with --multi-instance: the host's directory)",
    )
    serve.add_argument("--port", type=int, required=True, help="TCP port (0: any free port)")
    serve.add_argument("--token-file", type=Path, required=True, help="file with the bearer token")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port-file", type=Path, help="write the port listened on to this file")
    serve.add_argument("--keep", type=int, default=5, help="releases kept on disk (default 5)")
    many = serve.add_argument_group(
        "many instances on one host",
        "Serve many instances under ROOT/instances/, each with its own installation at "
        "/v1/instances/{name}/...; instances are created at start (the options below) or "
        "by PUT /v1/instances/{name}; those on disk from an earlier run are served again. "
        "--instance and --instance-count imply --multi-instance.",
    )
    many.add_argument(
        "--multi-instance", action="store_true", help="serve many instances under ROOT"
    )
    many.add_argument(
        "--instance",
        action="append",
        default=[],
        metavar="NAME",
        help="create this instance at start (repeatable)",
    )
    many.add_argument(
        "--instance-count",
        type=int,
        default=0,
        metavar="N",
        help="create N instances at start, named PREFIX-0001 ... PREFIX-N",
    )
    many.add_argument(
        "--instance-prefix",
        default="instance",
        metavar="PREFIX",
        help="name prefix for --instance-count (default: instance)",
    )
    faults = serve.add_argument_group("fault injection (tests)")
    faults.add_argument("--fault-error-rate", type=float, default=0.0, help="share of 503s")
    faults.add_argument("--fault-reset-rate", type=float, default=0.0, help="share of resets")
    faults.add_argument("--fault-hang-rate", type=float, default=0.0, help="share of hangs")
    faults.add_argument("--fault-latency-ms", type=float, default=0.0, help="added latency")
    faults.add_argument("--fault-unhealthy", action="store_true", help="health checks fail")
    faults.add_argument("--fault-seed", type=int, help="seed for the fault sequence")
    faults.add_argument(
        "--apply-delay-ms", type=float, default=0.0, help="pause after each unpacked component"
    )
    serve.set_defaults(func=_serve, lean=False)


def _serve(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from fleet.agent.errors import AgentConfigError
    from fleet.agent.faults import Faults
    from fleet.agent.models import describe_validation_error
    from fleet.agent.server import read_token, serve

    instances = _instances(args)
    if args.keep < 1:
        raise AgentConfigError(f"--keep must be at least 1, got {args.keep!r}")
    if not 0 <= args.port <= 65535:
        raise AgentConfigError(f"--port must be 0-65535, got {args.port!r}")
    try:
        faults = Faults(
            error_rate=args.fault_error_rate,
            reset_rate=args.fault_reset_rate,
            hang_rate=args.fault_hang_rate,
            latency_ms=args.fault_latency_ms,
            unhealthy=args.fault_unhealthy,
            seed=args.fault_seed,
        )
    except ValidationError as exc:
        raise AgentConfigError(f"Invalid fault option: {describe_validation_error(exc)}") from None
    token = read_token(args.token_file)
    if not args.lean:
        # The full CLI has imported every sub-command's dependencies (database, Prefect);
        # start over in the lean entry point so the agent's memory is only its own.
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, "-m", "fleet.agent", *_serve_argv(args)])
    serve(
        root=args.root,
        token=token,
        host=args.host,
        port=args.port,
        port_file=args.port_file,
        keep=args.keep,
        faults=faults,
        component_delay=args.apply_delay_ms / 1000,
        multi_instance=args.multi_instance or bool(instances),
        instances=instances,
    )
    return 0


# More instances than this at start is a typo, not a host (2,000 is the benchmark's).
MAX_INSTANCE_COUNT = 100_000


def _instances(args: argparse.Namespace) -> list[str]:
    """The instances to create at start, checked: named ones, then numbered ones."""
    from fleet.agent.errors import AgentConfigError
    from fleet.agent.host import numbered_instances
    from fleet.agent.models import check_instance_name

    if not 0 <= args.instance_count <= MAX_INSTANCE_COUNT:
        raise AgentConfigError(
            f"--instance-count must be 0-{MAX_INSTANCE_COUNT}, got {args.instance_count!r}"
        )
    names = [check_instance_name(name) for name in args.instance]
    if args.instance_count:
        names += numbered_instances(args.instance_prefix, args.instance_count)
    return list(dict.fromkeys(names))


def _serve_argv(args: argparse.Namespace) -> list[str]:
    argv = ["agent", "serve", "--root", str(args.root), "--port", str(args.port)]
    argv += ["--token-file", str(args.token_file), "--host", args.host, "--keep", str(args.keep)]
    if args.port_file is not None:
        argv += ["--port-file", str(args.port_file)]
    argv += ["--fault-error-rate", repr(args.fault_error_rate)]
    argv += ["--fault-reset-rate", repr(args.fault_reset_rate)]
    argv += ["--fault-hang-rate", repr(args.fault_hang_rate)]
    argv += ["--fault-latency-ms", repr(args.fault_latency_ms)]
    argv += ["--apply-delay-ms", repr(args.apply_delay_ms)]
    if args.fault_unhealthy:
        argv.append("--fault-unhealthy")
    if args.fault_seed is not None:
        argv += ["--fault-seed", str(args.fault_seed)]
    if args.multi_instance:
        argv.append("--multi-instance")
    for name in args.instance:
        argv += ["--instance", name]
    if args.instance_count:
        argv += ["--instance-count", str(args.instance_count)]
        argv += ["--instance-prefix", args.instance_prefix]
    return argv
