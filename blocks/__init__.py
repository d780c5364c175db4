"""Prefect Block types: where and how to reach an instance (configuration plus a client)."""

from blocks.targets import (
    BLOCK_TYPES,
    CommandTarget,
    FleetAgent,
    LocalTarget,
    load_target,
    register_block_types,
)

__all__ = [
    "BLOCK_TYPES",
    "CommandTarget",
    "FleetAgent",
    "LocalTarget",
    "load_target",
    "register_block_types",
]
