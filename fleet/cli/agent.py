"""`fleet agent serve`: run the agent beside one instance."""

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
    serve = agent_sub.add_parser("serve", help="serve the agent API for one installation")
    serve.add_argument("--root", type=Path, required=True, help="installation directory")
    serve.add_argument("--port", type=int, required=True, help="TCP port (0: any free port)")
    serve.add_argument("--token-file", type=Path, required=True, help="file with the bearer token")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port-file", type=Path, help="write the port listened on to this file")
    serve.add_argument("--keep", type=int, default=5, help="releases kept on disk (default 5)")
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
    )
    return 0


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
    return argv
