"""Console sessions: an API token exchanged for a session that expires.

A person signs in to the console with a Fleet API token once; the console
then carries a random session secret in a cookie. Only the SHA-256 of that
secret is stored, with the principal (the token's name) and when the
session expires. The role is not copied: it is read from the token on every
request, so revoking the token ends every session it opened at once.
Signing in and out are recorded in the audit chain (`console.sign-in`,
`console.sign-out`) in the same transaction as the session row.

The CSRF token of a session is derived from its secret
(`csrf_token(secret)`): nothing more to store, and only the holder of the
cookie can know it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, insert, select, update

from fleet.core.durations import isoformat
from fleet.db.audit import Entry, append_events
from fleet.db.models import ApiTokenRow, ConsoleSessionRow, table_of
from fleet.services import tokens
from fleet.services._common import now_or_clock, reading, writing
from fleet.services.tokens import Principal, Role

__all__ = ["Session", "csrf_token", "end_session", "session_of", "start_session"]

SESSION = table_of(ConsoleSessionRow)
_TOKEN = table_of(ApiTokenRow)
# token_urlsafe(32) is 43 characters; anything far off that is not a session secret.
_SECRET_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
# Expired sessions are deleted this long after they expire (they are kept a
# little so that a late request still finds out why it was signed out).
_KEEP_EXPIRED = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Session:
    """A live session: who, until when, and the secret that the cookie carries."""

    principal: Principal
    expires_at: datetime
    secret: str

    @property
    def csrf(self) -> str:
        return csrf_token(self.secret)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def csrf_token(secret: str) -> str:
    """The CSRF token of the session (or pre-session) whose secret is `secret`."""
    return hmac.new(secret.encode(), b"fleet-console-csrf", hashlib.sha256).hexdigest()


def _plausible(secret: str) -> bool:
    return 20 <= len(secret) <= 100 and set(secret) <= _SECRET_CHARS


def start_session(
    token: str,
    *,
    hours: float,
    now: datetime | None = None,
    engine: Engine | None = None,
) -> Session | None:
    """A new session for the holder of API token `token`; None when the token is
    not valid (unknown, revoked, malformed)."""
    now = now_or_clock(now)
    principal = tokens.authenticate(token.strip(), engine=engine)
    if principal is None:
        return None
    secret = secrets.token_urlsafe(32)
    expires = now + timedelta(hours=hours)
    with writing(engine) as session:
        session.execute(delete(SESSION).where(SESSION.c.expires_at < now - _KEEP_EXPIRED))
        session.execute(
            insert(SESSION),
            [
                {
                    "session_hash": _hash(secret),
                    "principal": principal.name,
                    "created_at": now,
                    "expires_at": expires,
                    "ended_at": None,
                }
            ],
        )
        append_events(
            session,
            [
                Entry(
                    "console.sign-in",
                    f"token:{principal.name}",
                    {"role": principal.role.value, "expires_at": isoformat(expires)},
                )
            ],
            actor=principal.name,
            at=now,
        )
    return Session(principal, expires, secret)


def session_of(
    secret: str, *, now: datetime | None = None, engine: Engine | None = None
) -> Session | None:
    """The live session whose cookie carries `secret`; None when there is none (never
    was, signed out, expired, or its token was revoked)."""
    if not _plausible(secret):
        return None
    now = now_or_clock(now)
    digest = _hash(secret)
    with reading(engine) as session:
        row = session.execute(
            select(
                SESSION.c.session_hash,
                SESSION.c.principal,
                SESSION.c.expires_at,
                SESSION.c.ended_at,
                _TOKEN.c.role,
                _TOKEN.c.revoked_at,
            )
            .join(_TOKEN, _TOKEN.c.name == SESSION.c.principal)
            .where(SESSION.c.session_hash == digest)
        ).first()
    if row is None or not hmac.compare_digest(row.session_hash, digest):
        return None
    if row.ended_at is not None or row.revoked_at is not None or row.expires_at <= now:
        return None
    return Session(Principal(row.principal, Role(row.role)), row.expires_at, secret)


def end_session(secret: str, *, now: datetime | None = None, engine: Engine | None = None) -> bool:
    """Sign out: the session ends now (its cookie is worthless from here on)."""
    now = now_or_clock(now)
    live = session_of(secret, now=now, engine=engine)
    if live is None:
        return False
    with writing(engine) as session:
        ended = session.execute(
            update(SESSION)
            .where((SESSION.c.session_hash == _hash(secret)) & SESSION.c.ended_at.is_(None))
            .values(ended_at=now)
        ).rowcount
        if ended:
            append_events(
                session,
                [Entry("console.sign-out", f"token:{live.principal.name}", {})],
                actor=live.principal.name,
                at=now,
            )
    return bool(ended)
