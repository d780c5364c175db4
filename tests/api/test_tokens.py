"""Tokens: shown once, stored as a hash, revoked at once; the CLI commands."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select

from fleet.cli.main import main
from fleet.core.errors import ConflictError, InputError, NotFoundError
from fleet.db.engine import create_all, dispose_engines, get_engine
from fleet.db.models import ApiTokenRow, table_of
from fleet.services import audit, tokens
from fleet.services.tokens import GRANTS, Role

TOKEN = table_of(ApiTokenRow)


@pytest.fixture
def engine(tmp_path):
    engine = get_engine(f"sqlite:///{tmp_path / 'fleet.db'}")
    create_all(engine)
    yield engine
    dispose_engines()


def test_only_the_hash_is_stored_and_the_secret_authenticates(engine):
    stored, secret = tokens.create_token("alice", "approver", actor="root", engine=engine)
    assert secret.startswith("fleet_") and len(secret) > 40
    with engine.connect() as conn:
        row = conn.execute(select(TOKEN)).one()
    assert row.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in str(tuple(row))
    principal = tokens.authenticate(secret, engine=engine)
    assert principal is not None and (principal.name, principal.role) == ("alice", Role.APPROVER)
    assert tokens.authenticate(secret + "x", engine=engine) is None
    assert tokens.authenticate("", engine=engine) is None
    assert [e.action for e in audit.events(engine=engine)] == ["token.create"]
    assert stored.revoked_at is None


def test_revoked_tokens_fail_at_once_and_names_are_never_reused(engine):
    _, secret = tokens.create_token("bob", "viewer", actor="root", engine=engine)
    tokens.revoke_token("bob", actor="root", engine=engine)
    assert tokens.authenticate(secret, engine=engine) is None
    with pytest.raises(ConflictError, match="revoked already"):
        tokens.revoke_token("bob", actor="root", engine=engine)
    with pytest.raises(ConflictError, match="never reused"):
        tokens.create_token("bob", "viewer", actor="root", engine=engine)
    with pytest.raises(NotFoundError, match="'nobody'"):
        tokens.revoke_token("nobody", actor="root", engine=engine)


@pytest.mark.parametrize(
    ("name", "role", "bad"),
    [
        ("alice", "root", "'root'"),
        ("no spaces", "viewer", "'no spaces'"),
        ("", "viewer", "''"),
        ("alice\n", "viewer", "'alice\\\\n'"),  # not stored as a second, untrimmed alice
    ],
)
def test_bad_input_is_refused_before_anything_is_written(engine, name, role, bad):
    with pytest.raises(InputError, match=bad):
        tokens.create_token(name, role, actor="root", engine=engine)
    assert tokens.list_tokens(engine=engine) == []
    assert list(audit.events(engine=engine)) == []


@pytest.mark.parametrize(
    ("role", "grants"),
    [
        ("viewer", {"viewer"}),
        ("operator", {"viewer", "operator"}),
        ("approver", {"viewer", "approver"}),
        ("admin", {"viewer", "operator", "approver", "admin"}),
    ],
)
def test_roles_grant(role, grants):
    assert {g.value for g in GRANTS[Role(role)]} == grants


def test_cli_prints_the_token_once_lists_and_revokes(tmp_path, monkeypatch, capsys):
    from fleet.settings import get_settings

    monkeypatch.setenv("FLEET_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    get_settings.cache_clear()
    try:
        assert main(["init"]) == 0
        capsys.readouterr()
        assert main(["tokens", "create", "--name", "ci", "--role", "operator", "--actor", "a"]) == 0
        out = capsys.readouterr()
        secret = out.out.strip()
        assert secret.startswith("fleet_") and "only time" in out.err
        assert main(["tokens", "list"]) == 0
        listing = capsys.readouterr().out
        assert "ci" in listing and "operator" in listing and secret not in listing
        assert main(["tokens", "create", "--name", "x", "--role", "root"]) == 2
        assert "'root'" in capsys.readouterr().err
        assert main(["tokens", "revoke", "ci", "--actor", "a"]) == 0
        assert tokens.authenticate(secret, engine=get_engine()) is None
    finally:
        dispose_engines()
        get_settings.cache_clear()
