"""`fleet api serve` serves the API on the settings' database."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
import pytest
from anyio import to_thread
from fastapi.testclient import TestClient

from fleet.api import create_app
from fleet.cli.main import main
from fleet.db.engine import dispose_engines, make_engine
from fleet.db.migrate import upgrade
from fleet.services import tokens
from fleet.settings import Settings


@pytest.mark.parametrize(
    ("flag", "value"), [("--port", "70000"), ("--workers", "0"), ("--threads", "0")]
)
def test_serve_refuses_a_bad_flag_naming_it(flag, value, capsys):
    assert main(["api", "serve", flag, value]) == 2
    err = capsys.readouterr().err
    assert flag in err and value in err


def test_the_thread_limit_applies_while_the_app_runs(tmp_path):
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'fleet.db'}", api_threads=3))
    with TestClient(app) as client:
        limit = client.portal.call(lambda: to_thread.current_default_thread_limiter().total_tokens)
    assert limit == 3


FLAGS = ("--workers", "2", "--threads", "2")


def test_serve_answers_with_tokens_on_two_workers(tmp_path):
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    upgrade(url)
    engine = make_engine(url)
    _, secret = tokens.create_token("eve", "viewer", actor="t", engine=engine)
    engine.dispose()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "fleet.cli.main", "api", "serve", "--port", str(port), *FLAGS],
        env={**os.environ, "FLEET_DATABASE_URL": url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                assert httpx.get(f"{base}/health", timeout=1).json() == {"status": "ok"}
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the API did not start"
                time.sleep(0.2)
        assert httpx.get(f"{base}/pins", timeout=5).status_code == 401
        with httpx.Client(headers={"Authorization": f"Bearer {secret}"}, timeout=5) as http:
            for _ in range(8):  # new connections: both workers answer some
                r = http.get(f"{base}/pins", headers={"Connection": "close"})
                assert r.status_code == 200 and r.json()["items"] == []
    finally:
        server.terminate()
        server.wait(10)
        dispose_engines()
    with socket.socket() as s:  # every worker is gone: nothing listens on the port
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT, not a listener
        s.bind(("127.0.0.1", port))


def test_two_workers_need_a_named_port(capsys):
    assert main(["api", "serve", "--port", "0", "--workers", "2"]) == 2
    assert "--port: 0 with --workers 2" in capsys.readouterr().err
