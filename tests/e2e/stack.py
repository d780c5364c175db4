"""The main job (`python -m deployments.demo`) as a child process of a test."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from deployments.demo import BANNER_READY

ROOT = Path(__file__).resolve().parents[2]


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_range(count: int) -> int:
    """The first of `count` consecutive free loopback ports."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20_000, 40_000 - count)
        if all(_free(base + i) for i in range(count)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports")


def processes_with_home(home: Path) -> list[int]:
    """Every process whose environment has FLEET_HOME=home (children, grandchildren)."""
    needle = f"FLEET_HOME={home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in env.split(b"\0"):
            found.append(int(entry.name))
    return found


class Stack:
    """The main job on a temporary FLEET_HOME and free ports; its output is kept."""

    def __init__(
        self,
        home: Path,
        fleet_file: Path | None = None,
        agents: int = 12,
        env: dict[str, str] | None = None,
    ) -> None:
        self.home = home
        self.extra_env = dict(env or {})
        self.fleet_file = fleet_file
        self.prefect_port = free_port()
        self.api_port = free_port()
        self.agent_port_base = free_port_range(agents)
        self.lines: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    @property
    def prefect_url(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FLEET_"))}
        env["FLEET_HOME"] = str(self.home)
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 300) -> Stack:
        argv = [sys.executable, "-m", "deployments.demo"]
        argv += ["--prefect-port", str(self.prefect_port), "--api-port", str(self.api_port)]
        argv += ["--agent-port-base", str(self.agent_port_base)]
        if self.fleet_file is not None:
            argv += ["--file", str(self.fleet_file)]
        self.lines = []
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if BANNER_READY in self.lines:
                time.sleep(0.2)  # the rest of the banner
                return self
            if self.proc.poll() is not None:
                self._reader.join(5)
                raise AssertionError(f"main job exited {self.proc.returncode}:\n{self.output}")
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"main job not up after {timeout}s:\n{self.output}")

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_output(self, text: str, timeout: float = 30) -> None:
        """Wait until a line of the main job's output contains `text`."""
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} within {timeout}s in:\n{self.output}")
            time.sleep(0.2)

    def token(self, role: str) -> str:
        for line in self.lines:
            parts = line.split()
            if len(parts) == 2 and parts[0] == role:
                return parts[1]
        raise AssertionError(f"no {role} token in:\n{self.output}")

    def stop(self, sig: signal.Signals = signal.SIGINT, timeout: float = 60) -> int:
        """Send `sig` and wait for the main job; returns its exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(10)
        if self._reader is not None:
            self._reader.join(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return code

    def kill_leftovers(self) -> None:
        for pid in processes_with_home(self.home):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
