"""Approvals: the four-eyes rule, the tally of one run's approvals, and whether an
approval has gone stale.

One run asks, per instance, for `required` approvals of one manifest revision
(its number and content hash, as the approval form showed them). The tally
counts distinct people after the one identity normalisation
(`fleet.core.identity`), verified or self-declared alike: `carol` and `Carol`
are one approver, and so are the API's `demo-approver` and a typed
`Demo-Approver`. The person who requested the run never approves it (four
eyes); one rejection rejects the instances it names. On a channel that
requires verified approvals, self-declared decisions are recorded but do not
count. A decision given for another revision than the one the run waits for
does not count either.

An approval is bound to what it was shown, and holds only while that is
still safe: `stale_reasons` says why an approved revision must not be
deployed now.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from packaging.version import Version

from fleet.core.advisories import Security
from fleet.core.errors import InputError, InvalidIdentity
from fleet.core.identity import check_identity, identity_key, same_person
from fleet.core.pins import Pin, applicable_pins
from fleet.core.versions import Registry

__all__ = [
    "ApprovalTally",
    "ApprovedRevision",
    "Ballot",
    "Count",
    "Request",
    "Verdict",
    "may_approve",
    "refusal",
    "stale_reasons",
]


class Verdict(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class Count(StrEnum):
    """What one decision did to the tally."""

    COUNTED = "counted"
    REPEATED = "repeated"  # this person had approved already: still one approver
    UNVERIFIED = "unverified"  # recorded, but the channel counts verified approvals only
    OTHER_REVISION = "other-revision"  # given for another revision than the one waited for
    DECIDED = "decided"  # the instance was approved or rejected already
    FOUR_EYES = "four-eyes"  # the requester's own approval


@dataclass(frozen=True, slots=True)
class Request:
    """What one instance of a run waits for: `required` approvals of one revision."""

    instance: str
    revision: int
    manifest_hash: str
    required: int
    verified_only: bool = False

    def __post_init__(self) -> None:
        if self.required < 1:
            raise InputError(f"Invalid approvals required: {self.required!r} (at least 1)")


@dataclass(frozen=True, slots=True)
class Ballot:
    """One decision on one instance, as recorded."""

    instance: str
    approver: str
    approve: bool
    verified: bool
    revision: int | None
    manifest_hash: str | None
    comment: str = ""


def may_approve(approver: str, requested_by: str) -> bool:
    """The four-eyes rule: whoever requested a run never approves it.

    Raises `InvalidIdentity` for a name that cannot be a person's.

    >>> may_approve("bob", "alice"), may_approve("Alice ", "alice")
    (True, False)
    """
    return not same_person(approver, requested_by)


def refusal(approver: str, *, requested_by: str, approve: bool) -> str | None:
    """Why this decision cannot be taken from `approver`, or None when it can.

    A name that cannot be a name is refused; the requester may reject (withdraw)
    the run but never approve it.

    >>> refusal("alice", requested_by="Alice", approve=True)
    "'alice' requested this run and cannot approve it (four eyes)"
    >>> refusal("alice", requested_by="Alice", approve=False) is None
    True
    """
    try:
        check_identity(approver, kind="approver")
    except InvalidIdentity as exc:
        return str(exc)
    if approve and not may_approve(approver, requested_by):
        return f"{approver.strip()!r} requested this run and cannot approve it (four eyes)"
    return None


@dataclass(slots=True)
class ApprovalTally:
    """The decisions of one run, counted per instance.

    >>> waiting = {"lts-1": Request("lts-1", 4, "ab12", required=2)}
    >>> tally = ApprovalTally("alice", waiting)
    >>> [tally.add(Ballot("lts-1", who, True, False, 4, "ab12")) for who in ("carol", "Carol")]
    [<Count.COUNTED: 'counted'>, <Count.REPEATED: 'repeated'>]
    >>> tally.verdict("lts-1"), tally.missing("lts-1")
    (<Verdict.PENDING: 'pending'>, 1)
    """

    requested_by: str
    requests: Mapping[str, Request]
    # instance -> identity key -> the name as first given
    _approvers: dict[str, dict[str, str]] = field(default_factory=dict)
    _rejections: dict[str, Ballot] = field(default_factory=dict)

    @classmethod
    def of(
        cls, requested_by: str, requests: Iterable[Request], ballots: Iterable[Ballot]
    ) -> ApprovalTally:
        """The tally of `ballots` in the order they were recorded."""
        tally = cls(requested_by, {r.instance: r for r in requests})
        for ballot in ballots:
            if ballot.instance in tally.requests:
                tally.add(ballot)
        return tally

    def add(self, ballot: Ballot) -> Count:
        """Count one decision. Raises `InputError` for an instance that does not wait,
        and `InvalidIdentity` for an approver that is no name."""
        request = self.requests.get(ballot.instance)
        if request is None:
            raise InputError(
                f"Instance {ballot.instance!r} is not waiting for approval in this run"
            )
        key = identity_key(ballot.approver, kind="approver")
        if ballot.approve and not may_approve(ballot.approver, self.requested_by):
            return Count.FOUR_EYES
        if (ballot.revision, ballot.manifest_hash) != (request.revision, request.manifest_hash):
            return Count.OTHER_REVISION
        if self.verdict(ballot.instance) is not Verdict.PENDING:
            return Count.DECIDED
        if request.verified_only and not ballot.verified:
            return Count.UNVERIFIED
        if not ballot.approve:
            self._rejections[ballot.instance] = ballot
            return Count.COUNTED
        given = self._approvers.setdefault(ballot.instance, {})
        if key in given:
            return Count.REPEATED
        given[key] = ballot.approver.strip()
        return Count.COUNTED

    def verdict(self, instance: str) -> Verdict:
        if instance in self._rejections:
            return Verdict.REJECTED
        if len(self._approvers.get(instance, ())) >= self.requests[instance].required:
            return Verdict.APPROVED
        return Verdict.PENDING

    def pending(self) -> list[str]:
        return [i for i in self.requests if self.verdict(i) is Verdict.PENDING]

    def approved(self) -> list[str]:
        return [i for i in self.requests if self.verdict(i) is Verdict.APPROVED]

    def missing(self, instance: str) -> int:
        return max(0, self.requests[instance].required - len(self._approvers.get(instance, ())))

    def approvers(self, instance: str) -> list[str]:
        """Who approved `instance` so far, one name per person, as first given."""
        return list(self._approvers.get(instance, {}).values())

    def rejection(self, instance: str) -> Ballot | None:
        return self._rejections.get(instance)


@dataclass(frozen=True, slots=True)
class ApprovedRevision:
    """An approved manifest revision, and what the instance ran when it was planned."""

    instance: str
    channel: str
    revision: int
    components: Mapping[str, Version]
    base: Mapping[str, Version]
    rollback: bool = False

    @property
    def moves(self) -> dict[str, Version]:
        """The versions deploying it would change (the chosen ones)."""
        return {c: v for c, v in sorted(self.components.items()) if self.base.get(c) != v}


def _versions(components: Mapping[str, Version], names: Iterable[str]) -> str:
    return ", ".join(f"{c} {components.get(c) or '(none)'}" for c in sorted(names))


def stale_reasons(
    approved: ApprovedRevision,
    *,
    running: Mapping[str, Version],
    registry: Registry,
    pins: Sequence[Pin],
    security: Security,
) -> list[str]:
    """Why `approved` must not be deployed now (empty: it still may be).

    An approval is stale when the instance's running manifest changed since
    the revision was planned, or when a version the revision moves to is now
    yanked, excluded by an active pin, or affected by an advisory enforced
    now (`security` decides that, at its `now`). Components the revision
    leaves as they are do not make it stale: deploying it changes nothing
    there. A rollback restores what ran before: pins and yanks do not hold it
    back (as when it was chosen), enforced advisories do.

    >>> from datetime import datetime, timezone
    >>> v = Version
    >>> r1 = ApprovedRevision("vandelay-prod", "lts", 1,
    ...     {"api": v("2.3.3"), "worker": v("2.3.1")}, {"api": v("2.3.3"), "worker": v("2.3.0")})
    >>> now = datetime(2026, 11, 30, tzinfo=timezone.utc)
    >>> stale_reasons(r1, running={"api": v("2.3.4"), "worker": v("2.3.0")},
    ...     registry=Registry([]), pins=[], security=Security([], now=now))[0]
    'vandelay-prod runs api 2.3.4 now, not api 2.3.3 as when revision 1 was planned'
    """
    reasons: list[str] = []
    concerned = set(approved.base) | set(approved.components)
    changed = sorted(c for c in concerned if running.get(c) != approved.base.get(c))
    if changed:
        reasons.append(
            f"{approved.instance} runs {_versions(running, changed)} now, not "
            f"{_versions(approved.base, changed)} as when revision {approved.revision} was planned"
        )
    moves = approved.moves
    for component, version in moves.items():
        found = registry.find(component, version)
        if found is None:
            reasons.append(f"{component} {version} is no longer in the registry")
        elif found.yanked and not approved.rollback:
            why = f" ({found.yanked_reason})" if found.yanked_reason else ""
            reasons.append(f"{component} {version} is yanked{why}")
    if not approved.rollback:
        active, _ = applicable_pins(
            pins, instance=approved.instance, channel=approved.channel, now=security.now
        )
        for pin in active:
            moved = moves.get(pin.component)
            if moved is not None and not pin.spec.contains(moved, prereleases=True):
                reasons.append(f"{pin.component} {moved} is excluded by {pin.describe()}")
    for finding in security.enforced(approved.instance, moves):
        reasons.append(
            f"{finding.advisory.component} {finding.version} is affected by "
            f"{finding.advisory.label()}, enforced now"
        )
    return reasons
