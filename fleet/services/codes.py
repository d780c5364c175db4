"""One-time approval codes: a verified identity carried through the Prefect UI's form.

Prefect's open-source server has no users: a name typed into a run's Resume
form is self-declared. An approver who wants to approve there as a verified
principal asks Fleet for a code (`fleet approvals code RUN_ID`, or
`POST /approvals/{flow_run_id}/code`), authenticated with their API token,
and pastes it into the form's Code field. A code is bound to one run and one
principal, valid `CODE_LIFETIME`, usable once; only its SHA-256 is stored
(98 random bits: there is nothing a slow hash would protect).

When the run reads a form that carries a code, `redeem_code` gives the
code's principal: the decision is verified and taken under that name, not
the typed one, and four eyes apply to it. A spent, expired, unknown or
foreign (another run's) code is refused; the caller records the refusal in
the audit chain. A foreign code is spent by the attempt (it may have
leaked). The input Prefect keeps with the run is then a spent code.

A run that re-executes from the top (a suspended run resumes that way)
reads its inputs again: the code spent by the same run and form (pause
key) is recognised and gives its principal again, and nothing is recorded
twice.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import Engine, insert, select, update

from fleet.core.approvals import may_approve
from fleet.core.durations import isoformat
from fleet.core.errors import ConflictError, InputError, NotFoundError, PermissionDenied
from fleet.db.audit import Entry, append_events
from fleet.db.history import APPROVAL_CODE
from fleet.services import approvals, tokens
from fleet.services._common import now_or_clock, writing
from fleet.services.tokens import Principal, Role

__all__ = ["CODE_LIFETIME", "CodeRefused", "IssuedCode", "issue_code", "redeem_code"]

CODE_LIFETIME = timedelta(minutes=15)
# No 0/O, 1/I/L, U: a code read aloud or retyped is not misread. 30 symbols, 20 of them.
_ALPHABET = "ABCDEFGHJKMNPQRSTVWXYZ23456789"
_LENGTH = 20
_GROUP = 5


class CodeRefused(PermissionDenied):
    """An approval code that does not approve: unknown, spent, expired or another run's."""

    def __init__(self, reason: str, *, principal: str | None = None) -> None:
        self.reason = reason
        self.principal = principal
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class IssuedCode:
    code: str
    flow_run_id: str
    principal: str
    expires_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "flow_run_id": self.flow_run_id,
            "principal": self.principal,
            "expires_at": isoformat(self.expires_at),
        }


def _canonical(code: str) -> str:
    """Upper case without dashes and white space: `abcde-fghjk` is `ABCDEFGHJK`."""
    return "".join(ch for ch in code.upper() if ch not in "- \t\r\n")


def _hash(canonical: str) -> str:
    return hashlib.sha256(canonical.encode()).hexdigest()


def _new_code() -> str:
    raw = "".join(secrets.choice(_ALPHABET) for _ in range(_LENGTH))
    return "-".join(raw[i : i + _GROUP] for i in range(0, _LENGTH, _GROUP))


def issue_code(
    flow_run_id: str,
    *,
    principal: Principal,
    now: datetime | None = None,
    engine: Engine | None = None,
) -> IssuedCode:
    """A new code with which `principal` approves or rejects in `flow_run_id`'s form.

    Refused (`PermissionDenied`, recorded) for the run's requester; the run
    must wait for approval (Fleet's records say so).
    """
    now = now_or_clock(now)
    try:
        UUID(flow_run_id)
    except ValueError:
        raise InputError(f"Invalid flow run id: {flow_run_id!r}") from None
    if not principal.can(Role.APPROVER):
        raise PermissionDenied(
            f"Role {principal.role.value!r} of {principal.name!r} does not grant 'approver'"
        )
    opened = approvals.requests_of(flow_run_id, engine=engine)
    if opened is None:
        raise NotFoundError(f"Flow run {flow_run_id!r} has asked for no approval")
    if not approvals.still_open(flow_run_id, now=now, engine=engine):
        raise ConflictError(f"Flow run {flow_run_id!r} waits for no approval any more")
    if not may_approve(principal.name, opened.requested_by):
        reason = f"{principal.name!r} requested this run and cannot approve it (four eyes)"
        approvals.record_refusal(
            sorted(opened.requests),
            approver=principal.name,
            reason=reason,
            key=f"code-{secrets.token_hex(8)}",
            flow_run_id=flow_run_id,
            engine=engine,
        )
        raise PermissionDenied(reason)
    code = _new_code()
    expires = now + CODE_LIFETIME
    with writing(engine) as session:
        session.execute(
            insert(APPROVAL_CODE),
            [
                {
                    "code_hash": _hash(_canonical(code)),
                    "flow_run_id": flow_run_id,
                    "principal": principal.name,
                    "created_at": now,
                    "expires_at": expires,
                    "used_at": None,
                    "used_flow_run_id": None,
                    "used_key": None,
                }
            ],
        )
        append_events(
            session,
            [
                Entry(
                    "approval.code.issue",
                    f"flow-run:{flow_run_id}",
                    {"expires": isoformat(expires)},
                )
            ],
            actor=principal.name,
            at=now,
            flow_run_id=flow_run_id,
        )
    return IssuedCode(code, flow_run_id, principal.name, expires)


def redeem_code(
    code: str,
    *,
    flow_run_id: str,
    key: str,
    now: datetime | None = None,
    engine: Engine | None = None,
) -> str:
    """The principal of a valid code presented in `flow_run_id`'s form `key`; the code
    is spent. Raises `CodeRefused` (with the reason to record) for any other code."""
    now = now_or_clock(now)
    canonical = _canonical(code)
    if len(canonical) != _LENGTH or any(ch not in _ALPHABET for ch in canonical):
        raise CodeRefused("not an approval code (expected 20 letters and digits, in groups of 5)")
    digest = _hash(canonical)
    refusal: CodeRefused | None = None
    with writing(engine) as session:
        row = session.execute(
            select(APPROVAL_CODE).where(APPROVAL_CODE.c.code_hash == digest)
        ).first()
        if row is None or not hmac.compare_digest(row.code_hash, digest):
            raise CodeRefused("unknown approval code")
        who = row.principal
        if row.used_at is not None:
            if row.used_flow_run_id == flow_run_id and row.used_key == key:
                return str(who)  # this very form, read again by a replayed run
            raise CodeRefused(
                f"the approval code of {who!r} was used already, at {isoformat(row.used_at)}",
                principal=who,
            )
        if row.flow_run_id != flow_run_id:
            refusal = CodeRefused(
                f"the approval code of {who!r} was issued for run {row.flow_run_id}, not this "
                "one (it is spent now)",
                principal=who,
            )
        elif now >= row.expires_at:
            raise CodeRefused(
                f"the approval code of {who!r} expired at {isoformat(row.expires_at)}",
                principal=who,
            )
        else:
            holder = tokens.active_principal(who, session=session)
            if holder is None or not holder.can(Role.APPROVER):
                raise CodeRefused(
                    f"the approval code of {who!r} is void: the token is revoked or no longer "
                    "grants 'approver'",
                    principal=who,
                )
        session.execute(
            update(APPROVAL_CODE)
            .where(APPROVAL_CODE.c.id == row.id)
            .values(used_at=now, used_flow_run_id=flow_run_id, used_key=key)
        )
        append_events(
            session,
            [
                Entry(
                    "approval.code.spend",
                    f"flow-run:{row.flow_run_id}",
                    {
                        "principal": who,
                        "presented_in": flow_run_id,
                        "key": key,
                        "accepted": refusal is None,
                    },
                )
            ],
            actor=who,
            at=now,
            flow_run_id=flow_run_id,
        )
    if refusal is not None:
        raise refusal
    return str(who)
