"""The supervisor of `make run` (and of the scale-out stack), with real processes."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from deployments.supervisor import FIRST_BACKOFF, Supervisor

SLEEPER = [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(600)"]
DIES = [sys.executable, "-c", "import sys; print('broken config', flush=True); sys.exit(3)"]


def supervisor(tmp_path: Path, said: list[str]) -> Supervisor:
    return Supervisor(env=dict(os.environ), cwd=tmp_path, logs=tmp_path / "logs", say=said.append)


def wait_until(check, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_child_that_is_killed_is_restarted_and_the_others_stay(tmp_path: Path) -> None:
    said: list[str] = []
    sup = supervisor(tmp_path, said)
    try:
        victim = sup.start("api", SLEEPER)
        other = sup.start("agent", SLEEPER)
        first_pid, other_pid = victim.proc.pid, other.proc.pid
        wait_until(lambda: victim.log.exists() and "up" in victim.log.read_text())
        os.kill(first_pid, signal.SIGKILL)
        wait_until(lambda: victim.proc.poll() is not None)
        now = time.monotonic()
        sup.tick(now)
        assert said == [
            f"api exited with code -9; restarting in {FIRST_BACKOFF:.0f} s (log "
            f"{victim.log}; last line: up)"
        ]
        sup.tick(now + FIRST_BACKOFF / 2)
        assert victim.proc.pid == first_pid  # not yet: the backoff has not passed
        sup.tick(now + FIRST_BACKOFF)
        assert victim.proc.pid != first_pid and victim.proc.poll() is None
        assert said[-1] == "api restarted (restart 1)"
        assert other.proc.pid == other_pid and other.proc.poll() is None
    finally:
        sup.stop()
    assert sup.children == []


def test_a_child_that_keeps_dying_waits_longer_each_time(tmp_path: Path) -> None:
    said: list[str] = []
    sup = supervisor(tmp_path, said)
    try:
        child = sup.start("broken", DIES)
        now = time.monotonic()
        waits = []
        for _ in range(7):
            wait_until(lambda: child.proc.poll() is not None)
            sup.tick(now)
            waits.append(round(child.restart_at - now, 3))  # type: ignore[operator]
            now = child.restart_at  # type: ignore[assignment]
            sup.tick(now)
        assert waits == [1, 2, 4, 8, 16, 30, 30]
        assert "broken exited with code 3" in said[0] and "broken config" in said[0]
    finally:
        sup.stop()


def test_stop_ends_every_child_and_its_grandchildren(tmp_path: Path) -> None:
    grandchild = tmp_path / "grandchild.pid"
    spawner = [
        sys.executable,
        "-c",
        "import subprocess, sys, time, pathlib\n"
        f"p = subprocess.Popen({SLEEPER!r})\n"
        f"pathlib.Path({str(grandchild)!r}).write_text(str(p.pid))\n"
        "time.sleep(600)",
    ]
    sup = supervisor(tmp_path, [])
    sup.start("serve", spawner)
    sup.start("server", SLEEPER)
    wait_until(lambda: grandchild.exists() and grandchild.read_text())
    pid = int(grandchild.read_text())
    sup.stop(first=["serve"])

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # A zombie of a dead parent is reaped by init; count it as gone.
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"

    wait_until(gone)
