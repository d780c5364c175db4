"""Prefect's tag concurrency check, skipped for tag sets that no limit applies to.

Before a task run with tags starts, Prefect's engine asks the server for a
slot on each of its tags (the `tag:<tag>` concurrency limits): one request
per task run, unless the client saw the same tag set come back limit-free
in the last five seconds (Prefect keeps that answer in a small cache). Fleet
tags every deploy task run with its instance, so no two tag sets are alike
and every deploy made the request; during a 200-instance rollout the server
took 0.5-0.8 s to answer it, about as long as the deploy itself.

`TagChecks` keeps a recent reading of the server's concurrency limits, and
`clear(tags)`, called just before a task run is submitted,
records the run's tag set in Prefect's cache when no limit exists for any of
its tags. The engine then skips the request as it would for a tag set it
had checked itself. A tag set with a limited tag is left alone: its run
waits for its slot as before. If a Prefect release moves that cache,
nothing is recorded and every check is made as usual (a test notices).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any

from prefect.client.orchestration import get_client
from prefect.concurrency import services

__all__ = ["TagChecks", "all_concurrency_limits", "prefect_no_limits_cache"]

logger = logging.getLogger(__name__)


def prefect_no_limits_cache() -> tuple[MutableMapping[frozenset[str], bool], Any] | None:
    """Prefect's cache of limit-free tag sets and its lock, or None if this Prefect has none."""
    cache = getattr(services, "_no_limits_cache", None)
    lock = getattr(services, "_cache_lock", None)
    if not isinstance(cache, MutableMapping) or lock is None:
        return None
    return cache, lock


def all_concurrency_limits(client: Any) -> dict[str, int]:
    """Every global concurrency limit on the server, name -> limit, in pages of 200."""
    limits: dict[str, int] = {}
    while True:
        page = client.read_global_concurrency_limits(limit=200, offset=len(limits))
        limits.update({gcl.name: gcl.limit for gcl in page})
        if len(page) < 200:
            return limits


class TagChecks:
    """Clears limit-free tag sets in Prefect's cache, from a reading of the
    server's limits that a thread of its own refreshes every `every` seconds
    while the `with` block runs (a reading takes a request or two, slow
    under load: the rollout loop never waits for one). A reading older than
    `max_age` clears nothing. A limit created during a rollout therefore
    applies within `max_age` plus Prefect's five seconds, where Prefect
    alone would apply it within five.
    """

    def __init__(
        self,
        *,
        every: float = 3.0,
        max_age: float = 10.0,
        read_limits: Callable[[], Iterable[str]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.every = every
        self.max_age = max_age
        self.clock = clock
        self._read_limits = read_limits or _read_limit_names
        self._limited: frozenset[str] = frozenset()
        self._read_at: float | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> TagChecks:
        self._try_refresh()  # the first reading, before anything is submitted
        self._thread = threading.Thread(target=self._refresh, name="tag limits", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def clear(self, tags: Iterable[str]) -> bool:
        """Mark `tags` limit-free in Prefect's cache if no limit exists for any of them."""
        names = frozenset(f"tag:{tag}" for tag in tags)
        found = prefect_no_limits_cache()
        with self._lock:
            limited, read_at = self._limited, self._read_at
        if not names or found is None or read_at is None:
            return False
        if self.clock() - read_at > self.max_age or names & limited:
            return False
        cache, lock = found
        with lock:
            cache[names] = True
        return True

    def refresh(self) -> None:
        """Read the server's limits now."""
        started = self.clock()
        limited = frozenset(self._read_limits())
        with self._lock:
            self._limited, self._read_at = limited, started

    def _refresh(self) -> None:
        while not self._stop.wait(self.every):
            self._try_refresh()

    def _try_refresh(self) -> None:
        try:
            self.refresh()
        except Exception as exc:  # the reading ages out: every check is made
            logger.warning("could not read the concurrency limits: %s", exc)


def _read_limit_names() -> Iterable[str]:
    with get_client(sync_client=True) as client:
        return all_concurrency_limits(client).keys()
