"""Prefect tasks: thin wrappers, one I/O step each, over `fleet.services` and targets."""

from tasks._tls import share_tls_context

# Every flow imports its tasks from here: its Prefect clients share one TLS context.
share_tls_context()
