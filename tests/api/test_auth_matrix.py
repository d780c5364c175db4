"""Every route x every role (and no token, a revoked token, malformed headers)."""

from __future__ import annotations

from typing import Any

import pytest

from fleet.api import create_app
from tests.api.support import ROLES

pytestmark = pytest.mark.usefixtures("prefect_server")

RUN = "6f1c9e2a-0000-4000-8000-00000000a11e"  # fixed: test ids must match in every worker
# (method, path, body, the grant it needs); None: no token needed.
ROUTES: list[tuple[str, str, Any, str | None]] = [
    ("GET", "/health", None, None),
    ("GET", "/components", None, "viewer"),
    ("GET", "/components/api/versions", None, "viewer"),
    ("POST", "/components/api/versions", {"version": "9.9.9"}, "operator"),
    ("GET", "/channels", None, "viewer"),
    ("GET", "/channels/stable", None, "viewer"),
    ("PUT", "/channels/canary", {"policy": "frozen"}, "admin"),
    ("GET", "/instances", None, "viewer"),
    ("GET", "/instances/acme-prod", None, "viewer"),
    ("PUT", "/instances/acme-prod/policy", {"policy_override": None}, "admin"),
    ("GET", "/pins", None, "viewer"),
    (
        "POST",
        "/pins",
        {"scope": "global", "component": "api", "spec": "<9", "reason": "r"},
        "operator",
    ),
    ("DELETE", "/pins/999", None, "operator"),
    ("POST", "/pins/999/expire", None, "operator"),
    ("GET", "/advisories", None, "viewer"),
    ("POST", "/advisories/osv", {"records": [], "component_map": {}}, "operator"),
    (
        "POST",
        "/advisories/FLEET-2026-0004/risk-acceptances",
        {"instance": "acme-prod", "reason": "r", "until": "2099-01-01T00:00:00Z"},
        "admin",
    ),
    ("GET", "/plans/preview?instance=acme-prod", None, "viewer"),
    ("POST", "/rollouts", {"dry_run": True}, "operator"),
    ("GET", "/rollouts", None, "viewer"),
    ("GET", f"/rollouts/{RUN}", None, "viewer"),
    ("GET", f"/rollouts/{RUN}/deployments?instance=acme-prod", None, "viewer"),
    ("GET", "/approvals", None, "viewer"),
    ("POST", f"/approvals/{RUN}", {"decision": "approve"}, "approver"),
    ("POST", f"/approvals/{RUN}/code", None, "approver"),
    ("POST", "/rollbacks", {"instances": ["acme-prod"], "reason": "r"}, "operator"),
    ("GET", "/history/acme-prod", None, "viewer"),
    ("GET", "/history/acme-prod/deployments", None, "viewer"),
    ("GET", "/audit/events", None, "viewer"),
    ("GET", "/audit/export", None, "viewer"),
    ("GET", "/audit/verify", None, "viewer"),
    ("GET", "/audit/reports/acme-prod?at=2026-11-30T12:00:00Z", None, "viewer"),
    ("GET", "/audit/reports/acme-prod/markdown?at=2026-11-30T12:00:00Z", None, "viewer"),
    ("GET", "/audit/witnesses", None, "viewer"),
    ("GET", "/compliance", None, "viewer"),
    ("GET", "/tokens", None, "admin"),
    ("POST", "/tokens", {"name": "new-one", "role": "viewer"}, "admin"),
    ("DELETE", "/tokens/nobody", None, "admin"),
]
GRANTED = {
    "viewer": {"viewer"},
    "operator": {"viewer", "operator"},
    "approver": {"viewer", "approver"},
    "admin": {"viewer", "operator", "approver", "admin"},
}
IDS = [f"{m} {p.split('?')[0]}" for m, p, _, _ in ROUTES]


def test_the_table_covers_every_route():
    document = create_app().openapi()
    documented = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    tabled = set()
    for method, path, _, _ in ROUTES:
        template = path.split("?")[0]
        for known_method, known in documented:
            parts, known_parts = template.split("/"), known.split("/")
            if (
                known_method == method
                and len(parts) == len(known_parts)
                and all(
                    k.startswith("{") or k == p for p, k in zip(parts, known_parts, strict=True)
                )
            ):
                tabled.add((known_method, known))
    assert tabled == documented


def call(api, method, path, body, headers):
    return api.client.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize(("method", "path", "body", "grant"), ROUTES, ids=IDS)
def test_each_role_gets_in_or_gets_403(api, method, path, body, grant):
    for role in ROLES:
        response = call(api, method, path, body, api.auth(role))
        if grant is None or grant in GRANTED[role]:
            assert response.status_code not in (401, 403, 500), (role, response.text)
        else:
            assert response.status_code == 403, (role, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert repr(grant) in response.json()["detail"]


@pytest.mark.parametrize(("method", "path", "body", "grant"), ROUTES, ids=IDS)
def test_no_revoked_or_malformed_token_gets_401(api, method, path, body, grant):
    if grant is None:
        assert call(api, method, path, body, {}).status_code == 200
        return
    secret = api.add_token("leaver", "admin")
    api.client.delete("/tokens/leaver", headers=api.auth("admin"))
    bad_headers = [
        {},
        {"Authorization": f"Bearer {secret}"},  # revoked
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": f"Basic {api.secrets['admin']}"},
        {"Authorization": f"Bearer {api.secrets['admin']} extra"},
        {"Authorization": api.secrets["admin"]},
        {"Authorization": "Bearer fleet_" + "A" * 43},  # well formed, unknown
    ]
    for headers in bad_headers:
        response = call(api, method, path, body, headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"].startswith("Bearer")
