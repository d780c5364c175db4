"""API tokens: create (the secret is shown once), list, revoke, authenticate.

Only the SHA-256 of a token is stored. A token is 32 random bytes
(`secrets.token_urlsafe`), so a plain hash is enough: there is nothing to
guess that a slow hash would protect. Lookup is by hash, and the stored hash
is compared again with `hmac.compare_digest`.

Roles and what they grant (a grant is named after the role that brings it):

    viewer    read everything
    operator  viewer + start rollouts and rollbacks, pins, versions, advisory imports
    approver  viewer + approve or reject waiting runs
    admin     every grant: channels, policies, tokens, risk acceptances, and the above

`approver` reads because it must see what it approves. `operator` and
`approver` are kept apart (one token does not both request and approve);
four eyes still hold by identity for `admin`, who may do both: the
requester of a run can never approve it.

A token's name is the principal's identity: it becomes `requested_by`,
the approver and the actor in the audit chain. Names are never reused,
not even after a revocation, so a name always means one holder; and names
are compared through the one identity rule (`fleet.core.identity`), so
`Alice` cannot be created beside `alice`: they would be one person to every
four-eyes check.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from fleet.core.durations import isoformat
from fleet.core.errors import ConflictError, InputError, NotFoundError
from fleet.core.identity import check_identity, identity_key
from fleet.db.audit import Entry, append_events
from fleet.db.models import ApiTokenRow, table_of
from fleet.services._common import now_or_clock, reading, writing

__all__ = [
    "GRANTS",
    "TOKEN_PREFIX",
    "Principal",
    "Role",
    "StoredToken",
    "active_principal",
    "authenticate",
    "create_token",
    "hash_token",
    "list_tokens",
    "revoke_token",
]

TOKEN = table_of(ApiTokenRow)
TOKEN_PREFIX = "fleet_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")
# token_urlsafe(32) is 43 characters; anything far off that is not a token.
_SECRET = re.compile(r"^fleet_[A-Za-z0-9_-]{20,100}$")


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    APPROVER = "approver"
    ADMIN = "admin"


GRANTS: dict[Role, frozenset[Role]] = {
    Role.VIEWER: frozenset({Role.VIEWER}),
    Role.OPERATOR: frozenset({Role.VIEWER, Role.OPERATOR}),
    Role.APPROVER: frozenset({Role.VIEWER, Role.APPROVER}),
    Role.ADMIN: frozenset(Role),
}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a token's name and role."""

    name: str
    role: Role

    def can(self, grant: Role) -> bool:
        return grant in GRANTS[self.role]


@dataclass(frozen=True, slots=True)
class StoredToken:
    name: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role.value,
            "created_at": isoformat(self.created_at),
            "revoked_at": None if self.revoked_at is None else isoformat(self.revoked_at),
        }


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise InputError(
            f"Invalid role: {role!r} (one of {', '.join(r.value for r in Role)})"
        ) from None


def _stored(row: Any) -> StoredToken:
    return StoredToken(row.name, Role(row.role), row.created_at, row.revoked_at)


def create_token(
    name: str,
    role: str,
    *,
    actor: str,
    now: datetime | None = None,
    engine: Engine | None = None,
) -> tuple[StoredToken, str]:
    """A new token for principal `name`; returns it with its secret (shown only now)."""
    now = now_or_clock(now)
    actor = check_identity(actor, kind="actor")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InputError(
            f"Invalid token name: {name!r} (letters, digits, '.', '_', '@', '-'; at most 100)"
        )
    check_identity(name, kind="token name")
    parsed = _role(role)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with writing(engine) as session:
        key = identity_key(name)
        for existing in session.execute(select(TOKEN.c.name)).scalars():
            if identity_key(existing) == key:
                raise ConflictError(
                    f"Token name {name!r} exists already as {existing!r} (names are never "
                    "reused, and names that differ only in case are one person)"
                )
        session.execute(
            insert(TOKEN),
            [
                {
                    "name": name,
                    "role": parsed.value,
                    "token_hash": hash_token(secret),
                    "created_at": now,
                    "revoked_at": None,
                }
            ],
        )
        append_events(
            session,
            [Entry("token.create", f"token:{name}", {"role": parsed.value})],
            actor=actor,
            at=now,
        )
    return StoredToken(name, parsed, now, None), secret


def list_tokens(*, engine: Engine | None = None) -> list[StoredToken]:
    with reading(engine) as session:
        rows = session.execute(select(TOKEN).order_by(TOKEN.c.id)).all()
    return [_stored(r) for r in rows]


def revoke_token(
    name: str, *, actor: str, now: datetime | None = None, engine: Engine | None = None
) -> StoredToken:
    """Revoke `name`'s token at once; the record stays (names are never reused)."""
    now = now_or_clock(now)
    actor = check_identity(actor, kind="actor")
    with writing(engine) as session:
        row = session.execute(select(TOKEN).where(TOKEN.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"Unknown token: {name!r}")
        if row.revoked_at is not None:
            raise ConflictError(
                f"Token {name!r} was revoked already at {isoformat(row.revoked_at)}"
            )
        session.execute(update(TOKEN).where(TOKEN.c.id == row.id).values(revoked_at=now))
        append_events(
            session,
            [Entry("token.revoke", f"token:{name}", {"role": row.role})],
            actor=actor,
            at=now,
        )
    return StoredToken(row.name, Role(row.role), row.created_at, now)


def active_principal(name: str, *, session: Connection) -> Principal | None:
    """The principal of `name`'s token when it is not revoked (inside the caller's transaction)."""
    row = session.execute(
        select(TOKEN.c.role, TOKEN.c.revoked_at).where(TOKEN.c.name == name)
    ).first()
    if row is None or row.revoked_at is not None:
        return None
    return Principal(name, Role(row.role))


def authenticate(secret: str, *, engine: Engine | None = None) -> Principal | None:
    """The principal of a valid, unrevoked token; None for anything else."""
    if not _SECRET.match(secret):
        return None
    digest = hash_token(secret)
    with reading(engine) as session:
        row = session.execute(
            select(TOKEN.c.name, TOKEN.c.role, TOKEN.c.token_hash, TOKEN.c.revoked_at).where(
                TOKEN.c.token_hash == digest
            )
        ).first()
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.token_hash, digest):
        return None
    return Principal(row.name, Role(row.role))
