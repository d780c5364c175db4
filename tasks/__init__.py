"""Prefect tasks: thin wrappers, one I/O step each, over `fleet.services` and targets."""
