"""Witnessed chain heads: the audit chain's head, published outside Fleet's database.

The hash chain shows an edited, deleted or reordered event, but not the
newest events cut off, nor a chain rewritten from event k with valid new
hashes: both leave a chain that verifies. A head (sequence number and hash)
published elsewhere (a Prefect artifact, an append-only file on another
host) pins what the chain was: a chain shorter than a published head is
**truncated**, one with another hash at that sequence number is **forked**.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from fleet.core.durations import isoformat
from fleet.core.errors import InputError

__all__ = [
    "ChainHead",
    "PublishedHead",
    "WitnessCheck",
    "WitnessStatus",
    "check_witnesses",
]

_HASH = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The chain's last event (`seq`, `hash`) as read at `at`; `seq` 0 is the empty chain.

    >>> ChainHead.from_json({"seq": 3, "hash": "a" * 64, "at": "2026-11-30T10:00:00Z"}).seq
    3
    """

    seq: int
    hash: str
    at: datetime

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "hash": self.hash, "at": isoformat(self.at)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ChainHead:
        """Read a published head; refuse anything that is not one (quoting it)."""
        try:
            seq, digest, at = data["seq"], data["hash"], data["at"]
        except (KeyError, TypeError):
            raise InputError(f"Invalid chain head: {data!r} (needs seq, hash, at)") from None
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise InputError(f"Invalid chain head seq: {seq!r}")
        if not isinstance(digest, str) or not _HASH.match(digest):
            raise InputError(f"Invalid chain head hash: {digest!r}")
        try:
            moment = datetime.fromisoformat(str(at).replace("Z", "+00:00"))
        except ValueError:
            raise InputError(f"Invalid chain head time: {at!r}") from None
        if moment.tzinfo is None:
            raise InputError(f"Invalid chain head time: {at!r} has no time zone")
        return cls(seq, digest, moment)


@dataclass(frozen=True, slots=True)
class PublishedHead:
    """A head as one witness holds it, and where (`file /x line 4`, `prefect artifact ...`)."""

    head: ChainHead
    where: str
    flow_run_id: str | None = None


class WitnessStatus(StrEnum):
    OK = "ok"
    TRUNCATED = "truncated"
    FORKED = "forked"


@dataclass(frozen=True, slots=True)
class WitnessCheck:
    published: PublishedHead
    status: WitnessStatus
    found: str | None = None

    def __str__(self) -> str:
        head = self.published.head
        said = (
            f"head {head.seq} ({head.hash[:16]}) published {isoformat(head.at)} "
            f"in {self.published.where}"
        )
        if self.status is WitnessStatus.TRUNCATED:
            return f"TRUNCATED: {said}; the chain now ends at event {self.found}"
        if self.status is WitnessStatus.FORKED:
            return f"FORKED: {said}; event {head.seq} now has hash {self.found}"
        return f"ok: {said}"


def check_witnesses(
    published: Iterable[PublishedHead], *, length: int, hashes: Mapping[int, str]
) -> tuple[WitnessCheck, ...]:
    """Judge every published head against the chain: `length` events, `hashes` by seq.

    >>> h = PublishedHead(ChainHead(5, "a" * 64, now), "file heads.jsonl line 1")
    >>> [c.status.value for c in check_witnesses([h], length=4, hashes={})]
    ['truncated']
    """
    out: list[WitnessCheck] = []
    for item in published:
        head = item.head
        if head.seq == 0:
            out.append(WitnessCheck(item, WitnessStatus.OK))
        elif head.seq > length:
            out.append(WitnessCheck(item, WitnessStatus.TRUNCATED, str(length)))
        elif hashes.get(head.seq) != head.hash:
            out.append(WitnessCheck(item, WitnessStatus.FORKED, hashes.get(head.seq)))
        else:
            out.append(WitnessCheck(item, WitnessStatus.OK))
    return tuple(out)
