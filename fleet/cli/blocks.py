"""`fleet blocks register`: make Fleet's block types known to the Prefect server."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    blocks = sub.add_parser("blocks", help="Prefect block types of deploy targets")
    blocks_sub = blocks.add_subparsers(dest="blocks_command", metavar="ACTION")
    blocks_sub.required = True
    reg = blocks_sub.add_parser("register", help="register the block types with Prefect")
    reg.set_defaults(func=_register)


def _register(args: argparse.Namespace) -> int:
    from blocks import register_block_types

    for slug in register_block_types():
        print(f"registered block type {slug}")
    return 0
