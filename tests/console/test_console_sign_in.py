"""Sign-in, sessions, sign-out, CSRF and the headers of the console."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from fleet.api import create_app
from fleet.services import audit, sessions, tokens
from fleet.settings import Settings
from tests.api.support import Api
from tests.console.support import csrf_of, sign_in


def test_the_root_and_every_page_lead_to_the_sign_in_form(api: Api) -> None:
    r = api.client.get("/", follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (303, "/console/")
    for path in ("/console/", "/console/security", "/console/audit?subject=instance%3Aa"):
        r = api.client.get(path, follow_redirects=False)
        assert r.status_code == 303
        assert r.headers["location"].startswith("/console/sign-in?next=%2Fconsole%2F")
    r = api.client.get("/console/sign-in")
    assert r.status_code == 200 and 'name="token"' in r.text


def test_a_token_is_exchanged_for_a_strict_http_only_expiring_cookie(api: Api) -> None:
    form = api.client.get("/console/sign-in")
    r = api.client.post(
        "/console/sign-in",
        data={"csrf": csrf_of(form.text), "token": api.secrets["viewer"], "next": "/console/"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/console/"
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("fleet_console="))
    attributes = {p.strip().split("=")[0].lower() for p in cookie.split(";")[1:]}
    assert {"httponly", "max-age", "path", "samesite"} <= attributes
    assert "samesite=strict" in cookie.lower() and "path=/console" in cookie.lower()
    assert "secure" not in attributes  # plain HTTP here; over TLS, below
    max_age = int(cookie.lower().split("max-age=")[1].split(";")[0])
    assert 8 * 3600 - 60 <= max_age <= 8 * 3600
    page = api.client.get("/console/")
    assert page.status_code == 200 and "signed in as" in page.text
    assert [e.action for e in audit.events(engine=api.engine)][-1] == "console.sign-in"


def test_over_tls_the_cookie_is_secure(api: Api) -> None:
    client = TestClient(create_app(Settings(database_url=api.url)), base_url="https://fleet.test")
    with client:
        form = client.get("/console/sign-in")
        r = client.post(
            "/console/sign-in",
            data={"csrf": csrf_of(form.text), "token": api.secrets["viewer"]},
            headers={"origin": "https://fleet.test"},
            follow_redirects=False,
        )
    assert r.status_code == 303
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("fleet_console="))
    assert "secure" in {p.strip().lower() for p in cookie.split(";")}


@pytest.mark.parametrize(
    "token",
    [
        "",
        "fleet_not-a-real-token-but-long-enough-000",
        "x" * 10_000,
        "fleet_%E2%80%8Bzero-width-in-the-middle-of-it-0000000",
        "%ED%A0%80",  # a lone surrogate, UTF-8 encoded: not UTF-8
        "%FF%FE",
        "x" * 70_000,  # more than a form may be
    ],
    ids=["empty", "unknown", "huge", "zero-width", "lone-surrogate", "not-utf8", "too-big"],
)
def test_a_bad_token_signs_nobody_in(api: Api, token: str) -> None:
    form = api.client.get("/console/sign-in")
    body = f"csrf={csrf_of(form.text)}&token={token}".encode()
    r = api.client.post(
        "/console/sign-in",
        content=body,
        headers={"content-type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert r.status_code in (401, 422), r.text
    assert not any(c.startswith("fleet_console=") for c in r.headers.get_list("set-cookie"))
    assert api.client.get("/console/", follow_redirects=False).status_code == 303


def test_the_sign_in_form_needs_its_own_csrf_token(api: Api) -> None:
    api.client.get("/console/sign-in")
    body = {"token": api.secrets["admin"]}
    r = api.client.post("/console/sign-in", data=body, follow_redirects=False)
    assert r.status_code == 403
    r = api.client.post("/console/sign-in", data={**body, "csrf": "0" * 64}, follow_redirects=False)
    assert r.status_code == 403
    assert api.client.get("/console/", follow_redirects=False).status_code == 303


def test_sign_out_ends_the_session_on_the_server(api: Api) -> None:
    csrf = sign_in(api.client, api.secrets["operator"])
    secret = api.client.cookies["fleet_console"]
    r = api.client.post("/console/sign-out", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/sign-in"
    # The old cookie, replayed, is worthless now.
    api.client.cookies.set("fleet_console", secret, path="/console")
    assert api.client.get("/console/", follow_redirects=False).status_code == 303
    actions = [e.action for e in audit.events(engine=api.engine)]
    assert actions[-2:] == ["console.sign-in", "console.sign-out"]


def test_a_revoked_token_ends_its_sessions_at_once(api: Api) -> None:
    sign_in(api.client, api.secrets["approver"])
    assert api.client.get("/console/", follow_redirects=False).status_code == 200
    tokens.revoke_token("approver", actor="tests", engine=api.engine)
    assert api.client.get("/console/", follow_redirects=False).status_code == 303


def test_sessions_expire(api: Api) -> None:
    past = datetime.now(UTC) - timedelta(hours=9)
    started = sessions.start_session(api.secrets["viewer"], hours=8, now=past, engine=api.engine)
    assert started is not None
    assert sessions.session_of(started.secret, now=past, engine=api.engine) is not None
    assert sessions.session_of(started.secret, engine=api.engine) is None
    api.client.cookies.set("fleet_console", started.secret, path="/console")
    assert api.client.get("/console/", follow_redirects=False).status_code == 303


@pytest.mark.parametrize(
    "secret", ["", "a", "A" * 43 + "!", "\x00" * 43, "é" * 43, "A" * 5000], ids=repr
)
def test_a_made_up_cookie_is_no_session(api: Api, secret: str) -> None:
    assert sessions.session_of(secret, engine=api.engine) is None


def test_console_pages_carry_a_strict_csp_and_the_api_keeps_its_own_headers(api: Api) -> None:
    sign_in(api.client, api.secrets["viewer"])
    page = api.client.get("/console/")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-store"
    assert "style=" not in page.text and "<script>" not in page.text
    health = api.client.get("/health")
    assert "content-security-policy" not in health.headers


def test_next_only_leads_to_a_console_page(api: Api) -> None:
    for target in ("https://evil.example/", "//evil.example/console/", "/console/\\evil", "/docs"):
        form = api.client.get("/console/sign-in", params={"next": target})
        assert 'name="next" value="/console/"' in form.text
        r = api.client.post(
            "/console/sign-in",
            data={"csrf": csrf_of(form.text), "token": api.secrets["viewer"], "next": target},
            follow_redirects=False,
        )
        assert r.headers["location"] == "/console/"
        api.client.cookies.clear()
