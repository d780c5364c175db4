"""`fleet artifacts build`: demo artifacts for a fleet file's versions."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    artifacts = sub.add_parser("artifacts", help="the artifact store")
    artifacts_sub = artifacts.add_subparsers(dest="artifacts_command", metavar="ACTION")
    artifacts_sub.required = True
    build = artifacts_sub.add_parser(
        "build",
        help="build demo artifacts for every version in a fleet file and record their sha256",
    )
    build.add_argument("file", type=Path, metavar="FILE", help="fleet file (rewritten in place)")
    build.add_argument("--out", type=Path, required=True, help="artifact store directory")
    build.add_argument("--size", type=int, default=0, help="payload bytes per artifact")
    build.set_defaults(func=_build)


def _build(args: argparse.Namespace) -> int:
    from fleet.artifacts import build_demo_artifacts
    from fleet.core.errors import InputError

    if args.size < 0:
        raise InputError(f"--size must not be negative, got {args.size!r}")
    refs = build_demo_artifacts(args.file, args.out, size=args.size)
    for ref in refs:
        print(f"{ref.sha256}  {ref.path}")
    print(f"{len(refs)} artifacts in {args.out}; sha256 recorded in {args.file}")
    return 0
