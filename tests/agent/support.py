"""Helpers of the agent tests: manifests over demo artifacts, agent processes."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from fleet.agent.client import AgentClient
from fleet.agent.models import Manifest
from fleet.artifacts import ArtifactRef

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "t0ken-for-tests-5f3c9a"
COMPONENTS = ("api", "web", "worker")
VERSIONS = ("1.0.0", "2.0.0")


def make_manifest(
    refs: dict[str, ArtifactRef],
    versions: dict[str, str],
    *,
    revision: int = 1,
    instance: str = "acme-prod",
    salt: str = "",
    base_url: str | None = None,
) -> Manifest:
    """A manifest for `versions` whose hash names its content (plus `salt`, to force new ones)."""
    components = {}
    for name, version in versions.items():
        ref = refs[f"{name}=={version}"]
        url = ref.url
        if base_url is not None:
            url = f"{base_url}/{name}/{version}/{ref.path.name}"
        components[name] = {"version": version, "url": url, "sha256": ref.sha256}
    digest = hashlib.sha256(json.dumps([versions, salt], sort_keys=True).encode()).hexdigest()
    return Manifest.model_validate(
        {
            "instance": instance,
            "revision": revision,
            "manifest_hash": digest,
            "components": components,
        }
    )


class AgentProcess:
    """`fleet agent serve` in a child process on a free loopback port."""

    def __init__(
        self,
        root: Path,
        workdir: Path,
        *extra: str,
        token: str = TOKEN,
        entry: str = "fleet.cli.main",
    ) -> None:
        # entry "fleet.agent" skips the full CLI's hand-over (faster restarts).
        self.entry = entry
        self.root = root
        self.token = token
        workdir.mkdir(parents=True, exist_ok=True)
        self.token_file = workdir / "token"
        self.token_file.write_text(token + "\n")
        self.port_file = workdir / "port"
        self.port_file.unlink(missing_ok=True)
        self.stderr_path = workdir / "agent.stderr"
        self.args = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, *, wait: bool = True) -> AgentProcess:
        self.port_file.unlink(missing_ok=True)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with self.stderr_path.open("ab") as err:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    self.entry,
                    "agent",
                    "serve",
                    "--root",
                    str(self.root),
                    "--port",
                    "0",
                    "--port-file",
                    str(self.port_file),
                    "--token-file",
                    str(self.token_file),
                    *self.args,
                ],
                stdout=err,
                stderr=err,
                env=env,
                cwd=ROOT,
            )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited {self.proc.returncode}: {self.stderr()}")
            if self.port_file.exists():
                self.url = f"http://127.0.0.1:{self.port_file.read_text()}"
                try:
                    r = httpx.get(
                        f"{self.url}/v1/faults",
                        headers={"Authorization": f"Bearer {self.token}"},
                        timeout=1,
                    )
                    if r.status_code == 200:
                        return
                except httpx.TransportError:
                    pass
            time.sleep(0.02)
        raise RuntimeError(f"agent not ready after {timeout}s: {self.stderr()}")

    def client(self, **kwargs: float) -> AgentClient:
        return AgentClient(self.url, self.token, **kwargs)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""
