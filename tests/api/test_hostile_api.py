"""Malformed values at the API: each is a 422 problem naming it, never a 500, and
nothing is stored. The body is sent as raw JSON so that what no client library
would produce (a lone surrogate, `NaN`) reaches the server as it would from a
hostile caller."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from fleet.db.engine import dispose_engines, make_engine
from fleet.services import tokens
from tests.api.support import Api, _template
from tests.db.support import snapshot

PIN = {"scope": "global", "component": "api", "spec": "<3", "reason": "r"}
RISK = "/advisories/FLEET-2026-0004/risk-acceptances"
ROLLBACK = {"instances": ["acme-prod"], "reason": "r"}

CASES: list[tuple[str, str, str, str]] = [
    # method, path, raw JSON body, text the problem must contain
    (
        "PUT",
        "/channels/stable",
        '{"policy": "frozen", "soak": "99999999999999w"}',
        "99999999999999w",
    ),
    ("PUT", "/channels/stable", '{"policy": "frozen", "soak": "99999999d"}', "99999999d"),
    ("PUT", "/channels/stable", '{"policy": "frozen", "soak": "\\uff11h"}', "１h"),
    ("PUT", "/channels/stable", '{"policy": "frozen", "approval_timeout": "-5h"}', "-5h"),
    (
        "PUT",
        "/channels/stable",
        '{"policy": "frozen", "maintenance_window": {"cron": "0 2 * * *", "duration": "1e400h"}}',
        "1e400h",
    ),
    ("PUT", "/channels/stable", '{"policy": "frozen", "soak": "\\ud800"}', "surrogate"),
    ("POST", "/pins", json.dumps({**PIN, "expires_at": "0001-01-01T00:00:00+01:00"}), "0001-01-01"),
    ("POST", "/pins", json.dumps({**PIN, "expires_at": "9999-12-31T23:59:59-01:00"}), "9999-12-31"),
    ("POST", "/pins", json.dumps({**PIN, "reason": "x" * 5000}), "4096"),
    (
        "POST",
        "/pins",
        '{"scope": "global", "component": "api", "spec": "<3", "reason": "\\ud800"}',
        "surrogate",
    ),
    (
        "POST",
        "/pins",
        '{"scope": "global", "component": "api", "spec": "<3", "reason": "a\\u0000b"}',
        "NUL",
    ),
    (
        "POST",
        RISK,
        '{"instance": "acme-prod", "reason": "r", "until": "9999-12-31T23:59:59-01:00"}',
        "9999-12-31",
    ),
    (
        "POST",
        RISK,
        '{"instance": "acme-prod", "reason": "r\\udfff", "until": "2027-01-01T00:00:00Z"}',
        "surrogate",
    ),
    (
        "POST",
        "/components/api/versions",
        '{"version": "9.0", "released_at": "0001-01-01T00:00:00+01:00"}',
        "0001-01-01",
    ),
    (
        "POST",
        "/components/api/versions",
        json.dumps({"version": "9.0", "yanked": True, "yanked_reason": "y" * 10_000_000}),
        "4096",
    ),
    (
        "POST",
        "/components/api/versions",
        '{"version": "9.0", "requires": {"\\ud800": "<3"}}',
        "surrogate",
    ),
    ("POST", "/rollouts", '{"strategy": {"canary": "nan"}}', "'nan'"),
    ("POST", "/rollouts", '{"strategy": {"canary": "nan%"}}', "'nan%'"),
    ("POST", "/rollouts", '{"strategy": {"batch": "1e400"}}', "'1e400'"),
    ("POST", "/rollouts", '{"strategy": {"batch": "inf"}}', "'inf'"),
    ("POST", "/rollouts", '{"strategy": {"halt_after": "nan%"}}', "'nan%'"),
    ("POST", "/rollouts", '{"strategy": {"halt_after": "101%"}}', "'101%'"),
    ("POST", "/rollouts", '{"strategy": {"canary": "-1"}}', "'-1'"),
    ("POST", "/rollouts", '{"strategy": {"canary": ""}}', "''"),
    ("POST", "/rollouts", '{"strategy": {"soak_seconds": NaN}}', "soak_seconds"),
    ("POST", "/rollouts", '{"strategy": {"soak_seconds": Infinity}}', "soak_seconds"),
    ("POST", "/rollouts", '{"at": "9999-12-31T23:59:59-01:00"}', "9999-12-31"),
    ("POST", "/rollouts", '{"selector": {"instances": ["\\ud800"]}}', "body.selector.instances[0]"),
    (
        "POST",
        "/rollbacks",
        json.dumps({**ROLLBACK, "target": "0001-01-01T00:00:00+01:00"}),
        "0001-01-01",
    ),
    ("POST", "/rollbacks", json.dumps({**ROLLBACK, "target": "r" + "9" * 60}), "rollback target"),
    ("POST", "/rollbacks", json.dumps({**ROLLBACK, "reason": "z" * 4097}), "4096"),
    (
        "POST",
        "/rollbacks",
        json.dumps(
            {**ROLLBACK, "risk_acceptance": {"reason": "r", "until": "9999-12-31T23:59:59-01:00"}}
        ),
        "9999-12-31",
    ),
    (
        "POST",
        "/approvals/0f8b1c7e-3d2a-4c55-9d43-6f7a2b1e9c10",
        json.dumps({"comment": "c" * 5000}),
        "4096",
    ),
    ("POST", "/tokens", '{"name": "\\ud800", "role": "viewer"}', "surrogate"),
    ("PUT", "/instances/acme-prod/policy", '{"policy_override": "\\ud800"}', "surrogate"),
]


def _send(api: Api, method: str, path: str, body: str) -> Any:
    return api.client.request(
        method,
        path,
        content=body.encode("utf-8"),
        headers={**api.auth("admin"), "content-type": "application/json"},
    )


@pytest.mark.parametrize(("method", "path", "body", "named"), CASES, ids=[c[3][:30] for c in CASES])
def test_each_malformed_value_is_a_422_problem_and_nothing_is_stored(
    api: Api, method: str, path: str, body: str, named: str
) -> None:
    before = snapshot(api.engine)
    r = _send(api, method, path, body)
    assert r.status_code == 422, r.text[:500]
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["status"] == 422
    assert named in problem["detail"], problem["detail"][:500]
    assert len(r.content) < 10_000, "a huge value is not echoed back whole"
    assert snapshot(api.engine) == before


@pytest.mark.parametrize(
    "query",
    [
        {"at": "0001-01-01T00:00:00+01:00"},
        {"at": "9999-12-31T23:59:59-01:00"},
    ],
)
def test_out_of_range_times_in_queries_are_422(api: Api, query: dict[str, str]) -> None:
    for path in ("/plans/preview", "/audit/events"):
        params = query if path == "/plans/preview" else {"since": query["at"]}
        r = api.client.get(path, params=params, headers=api.auth("admin"))
        assert r.status_code == 422, (path, r.text[:300])
        assert r.headers["content-type"] == "application/problem+json"
        assert query["at"][:10] in r.json()["detail"]


def test_soak_zero_is_accepted(api: Api) -> None:
    r = _send(api, "PUT", "/channels/stable", '{"policy": "frozen", "soak": "0"}')
    assert r.status_code == 200, r.text
    assert r.json()["soak"] == "0s"


def test_a_reason_of_4096_bytes_is_accepted(api: Api) -> None:
    r = _send(api, "POST", "/pins", json.dumps({**PIN, "reason": "é" * 2048}))
    assert r.status_code == 201, r.text[:300]
    r = _send(api, "POST", "/pins", json.dumps({**PIN, "reason": "é" * 2049}))
    assert r.status_code == 422 and "4098 bytes" in r.json()["detail"]


def test_a_live_server_answers_422_and_keeps_the_connection(tmp_path: Path) -> None:
    """Through uvicorn: a 500 closed the keep-alive connection; a 422 keeps it."""
    shutil.copyfile(_template(), tmp_path / "fleet.db")
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    engine = make_engine(url)
    _, secret = tokens.create_token("root", "admin", actor="tests", engine=engine)
    engine.dispose()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "fleet.cli.main", "api", "serve", "--port", str(port)],
        env={**os.environ, "FLEET_DATABASE_URL": url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the API did not start"
                time.sleep(0.2)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
        local = None
        for method, path, body, _ in CASES[:8] + CASES[16:20]:
            conn.request(method, path, body=body.encode("utf-8"), headers=headers)
            r = conn.getresponse()
            r.read()
            assert r.status == 422, (path, body[:80])
            assert (r.getheader("connection") or "").lower() != "close"
            assert conn.sock is not None
            local = local or conn.sock.getsockname()
            assert conn.sock.getsockname() == local, "the connection was reopened"
        conn.close()
    finally:
        server.terminate()
        server.wait(10)
        dispose_engines()
