"""`fleet api serve` serves the API on the settings' database."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx

from fleet.cli.main import main
from fleet.db.engine import dispose_engines, make_engine
from fleet.db.migrate import upgrade
from fleet.services import tokens


def test_serve_answers_with_tokens_and_refuses_a_bad_port(tmp_path, capsys):
    assert main(["api", "serve", "--port", "70000"]) == 2
    assert "70000" in capsys.readouterr().err
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    upgrade(url)
    engine = make_engine(url)
    _, secret = tokens.create_token("eve", "viewer", actor="t", engine=engine)
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
        r = httpx.get(f"{base}/pins", headers={"Authorization": f"Bearer {secret}"}, timeout=5)
        assert r.status_code == 200 and r.json()["items"] == []
    finally:
        server.terminate()
        server.wait(10)
        dispose_engines()
