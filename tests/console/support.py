"""Signing in to the console through its own form, as a browser does."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

CSRF = re.compile(r'name="csrf" value="([^"]*)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found is not None, html[:2000]
    return found.group(1)


def sign_in(client: TestClient, token: str) -> str:
    """Sign in with `token`; returns the session's CSRF token (the client keeps the cookie)."""
    form = client.get("/console/sign-in")
    assert form.status_code == 200, form.text
    r = client.post(
        "/console/sign-in",
        data={"csrf": csrf_of(form.text), "token": token, "next": "/console/"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    page = client.get("/console/audit")
    assert page.status_code == 200, page.text
    return csrf_of(page.text)
