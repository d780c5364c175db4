"""One TLS context per process for Prefect's API clients.

Prefect 3.9 builds a new `ssl.SSLContext` in every `PrefectClient` and
`SyncPrefectClient` it creates, loading the CA store each time (about 30 ms
of CPU here). It creates many clients during a rollout: one per distinct set
of concurrency-limit names, that is one per tagged task run (tags are
instance-specific) and one per lock request, plus one per lock-renewal
thread. Measured on a 200-instance rollout, those contexts took over a third
of the flow process's CPU, mostly on Prefect's single event-loop thread that
every task run waits on.

`share_tls_context()` makes the clients given no `verify` of their own (as
Prefect's code creates them) use a context built once, exactly as Prefect
would build it from the current settings
(`PREFECT_API_TLS_INSECURE_SKIP_VERIFY`, `PREFECT_API_SSL_CERT_FILE`, else
certifi's bundle), and built again if those settings change. An
`SSLContext` may be shared by any number of connections.
"""

from __future__ import annotations

import functools
import ssl
import threading
from collections.abc import Callable
from typing import Any

import certifi
from prefect.client.orchestration import PrefectClient, SyncPrefectClient
from prefect.settings import PREFECT_API_SSL_CERT_FILE, PREFECT_API_TLS_INSECURE_SKIP_VERIFY

__all__ = ["prefect_tls_context", "share_tls_context"]

_lock = threading.Lock()
_shared: dict[tuple[bool, str], ssl.SSLContext] = {}


def prefect_tls_context() -> ssl.SSLContext:
    """The context Prefect would build for a client now, built once per settings."""
    insecure = bool(PREFECT_API_TLS_INSECURE_SKIP_VERIFY.value())
    cafile = "" if insecure else (PREFECT_API_SSL_CERT_FILE.value() or certifi.where())
    key = (insecure, cafile)
    with _lock:
        context = _shared.get(key)
        if context is None:
            if insecure:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            else:
                context = ssl.create_default_context(cafile=cafile)
            _shared[key] = context
        return context


def _with_shared_context(init: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(init)
    def __init__(self: Any, api: Any, *args: Any, **kwargs: Any) -> None:
        settings = dict(kwargs.get("httpx_settings") or {})
        settings.setdefault("verify", prefect_tls_context())  # a caller's own `verify` stands
        kwargs["httpx_settings"] = settings
        init(self, api, *args, **kwargs)

    __init__.__fleet_shared_tls__ = True  # type: ignore[attr-defined]
    return __init__


def share_tls_context() -> None:
    """Make Prefect's clients share `prefect_tls_context()` (idempotent)."""
    for cls in (PrefectClient, SyncPrefectClient):
        if not getattr(cls.__init__, "__fleet_shared_tls__", False):
            cls.__init__ = _with_shared_context(cls.__init__)  # type: ignore[method-assign]
