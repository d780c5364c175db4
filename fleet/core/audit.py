"""The tamper-evident audit chain: canonical JSON and a sha256 hash chain.

`hash = sha256(prev_hash + canonical_json(event))`; the first event's
`prev_hash` is `GENESIS`. Editing, deleting or reordering any event breaks
the chain at that event, and `verify_chain` names the first broken link.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from fleet.core.durations import isoformat

__all__ = [
    "GENESIS",
    "AuditEvent",
    "ChainVerdict",
    "canonical_json",
    "chain_hash",
    "seal",
    "verify_chain",
]

GENESIS = "0" * 64


def _default(value: object) -> object:
    if isinstance(value, datetime):
        return isoformat(value)
    if isinstance(value, Version | SpecifierSet):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"Cannot put {type(value).__name__} into canonical JSON: {value!r}")


def canonical_json(value: object) -> str:
    """One spelling for one value: sorted keys, no spaces, UTF-8, times in UTC.

    >>> canonical_json({"b": 1, "a": [True, None]})
    '{"a":[true,null],"b":1}'
    """
    return json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=_default,
    )


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One append-only audit record; `seq` numbers the chain from 1."""

    seq: int
    at: datetime
    actor: str
    action: str
    subject: str
    details: Mapping[str, Any] = field(default_factory=dict)
    flow_run_id: str | None = None
    prev_hash: str = GENESIS
    hash: str = ""

    def body(self) -> dict[str, Any]:
        """The hashed content: everything but the two hashes."""
        return {
            "seq": self.seq,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "subject": self.subject,
            "details": self.details,
            "flow_run_id": self.flow_run_id,
        }


def chain_hash(prev_hash: str, event: AuditEvent) -> str:
    """sha256 of the previous hash followed by the event's canonical JSON."""
    payload = prev_hash + canonical_json(event.body())
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def seal(event: AuditEvent, prev_hash: str) -> AuditEvent:
    """Return `event` linked after `prev_hash`, with its hash filled in.

    >>> seal(AuditEvent(1, now, "ops", "pin.add", "pin:1"), GENESIS).prev_hash == GENESIS
    True
    """
    linked = replace(event, prev_hash=prev_hash)
    return replace(linked, hash=chain_hash(prev_hash, linked))


@dataclass(frozen=True, slots=True)
class ChainVerdict:
    ok: bool
    checked: int
    broken_seq: int | None = None
    reason: str | None = None

    def __str__(self) -> str:
        if self.ok:
            return f"audit chain OK: {self.checked} events verified"
        return f"audit chain BROKEN at event {self.broken_seq}: {self.reason}"


def verify_chain(events: Iterable[AuditEvent]) -> ChainVerdict:
    """Recompute the chain in `seq` order of storage and name the first broken link.

    A gap in `seq` (a deleted row), a `prev_hash` that is not the previous
    event's hash (deleted or reordered rows) and a hash that does not match
    the content (an edited row) are each a break.
    """
    prev_hash = GENESIS
    expected_seq = 1
    checked = 0
    for event in events:
        if event.seq != expected_seq:
            return ChainVerdict(
                False,
                checked,
                event.seq,
                f"expected event {expected_seq} next, found {event.seq} (missing or reordered)",
            )
        if event.prev_hash != prev_hash:
            return ChainVerdict(
                False, checked, event.seq, "prev_hash does not match the previous event's hash"
            )
        if chain_hash(prev_hash, event) != event.hash:
            return ChainVerdict(
                False, checked, event.seq, "content does not match its hash (edited)"
            )
        prev_hash = event.hash
        expected_seq += 1
        checked += 1
    return ChainVerdict(True, checked)
