"""Instance locks: two runs never touch one instance at once, and no lock
outlives its holder.

A lock is a lease on one instance, held by one flow run (in one process,
`holder`), until `expires_at`. The holder renews it while it works; a holder
that dies stops renewing, and the lock is free again once the lease has run
out, whatever else failed with it (the flow process, its machine, Prefect's
server). Fleet's recovery frees the locks of a run known to have crashed at
once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from fleet.core.durations import isoformat

__all__ = ["DEFAULT_LEASE", "Lease", "holds", "may_take"]

# How long a lock outlives a holder that stopped renewing it (docs/operations.md).
DEFAULT_LEASE = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class Lease:
    """Who holds one instance's lock, and until when unless renewed."""

    instance: str
    run: str
    holder: str
    acquired_at: datetime
    expires_at: datetime

    def live(self, now: datetime) -> bool:
        return now < self.expires_at

    def describe(self) -> str:
        """`held by run 1b2c... (host:1234) since ..., lease until ...`, for waits and reports.

        >>> Lease("acme-prod", "r1", "host:1", now, now + DEFAULT_LEASE).describe()
        'held by run r1 (host:1) since 2026-11-26T12:00:00Z, lease until 2026-11-26T12:01:00Z'
        """
        return (
            f"held by run {self.run} ({self.holder}) since {isoformat(self.acquired_at)}, "
            f"lease until {isoformat(self.expires_at)}"
        )


def may_take(lease: Lease | None, run: str, now: datetime) -> bool:
    """Whether `run` may take a lock: it is free, its lease ran out, or `run` holds it.

    >>> may_take(Lease("a", "r1", "h", now, now + DEFAULT_LEASE), "r2", now)
    False
    >>> may_take(Lease("a", "r1", "h", now, now + DEFAULT_LEASE), "r2", now + DEFAULT_LEASE)
    True
    """
    return lease is None or lease.run == run or not lease.live(now)


def holds(lease: Lease | None, run: str, now: datetime) -> bool:
    """Whether `run` holds a live lease: what a deploy needs while its record is open.

    >>> holds(Lease("a", "r1", "h", now, now + DEFAULT_LEASE), "r1", now + DEFAULT_LEASE)
    False
    """
    return lease is not None and lease.run == run and lease.live(now)
