"""Keep a set of child processes up: one that dies is restarted with backoff.

    sup = Supervisor(env=..., cwd=..., logs=Path(".fleet/demo/logs"), say=print)
    sup.start("prefect-server", ["python", "-m", "prefect", "server", "start"])
    while True:
        sup.tick()          # restarts what died, when its backoff has passed
        time.sleep(1)

Each child runs in its own session (a Ctrl-C reaches only the supervising
process, which then stops the children in order) and writes to its own log.
A child that exits is logged (its exit code and the tail of its log) and
started again after 1 s, then 2, 4 ... up to 30 s while it keeps dying; a
child that stayed up for a minute starts again from 1 s.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Child", "Supervisor"]

FIRST_BACKOFF = 1.0
MAX_BACKOFF = 30.0
# A child up this long is healthy again: its next restart waits FIRST_BACKOFF.
STABLE_AFTER = 60.0


@dataclass
class Child:
    name: str
    argv: list[str]
    log: Path
    proc: subprocess.Popen[bytes]
    started: float = field(default_factory=time.monotonic)
    backoff: float = FIRST_BACKOFF
    restart_at: float | None = None
    restarts: int = 0


@dataclass
class Supervisor:
    """The children of one stack, started in order and stopped in reverse."""

    env: Mapping[str, str]
    cwd: Path
    logs: Path
    say: Callable[[str], None] = print
    children: list[Child] = field(default_factory=list)

    def _spawn(self, argv: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            return subprocess.Popen(
                list(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(self.env),
                cwd=self.cwd,
                start_new_session=True,
            )

    def start(self, name: str, argv: Sequence[str]) -> Child:
        log = self.logs / f"{name}.log"
        child = Child(name, list(argv), log, self._spawn(argv, log))
        self.children.append(child)
        return child

    def dead(self) -> list[tuple[Child, int]]:
        """Children that have exited and wait for their restart: (child, exit code)."""
        return [
            (c, code)
            for c in self.children
            if c.restart_at is None and (code := c.proc.poll()) is not None
        ]

    def tick(self, now: float | None = None) -> None:
        """Schedule a restart for each child that died; restart those whose time came."""
        now = time.monotonic() if now is None else now
        for child, code in self.dead():
            if now - child.started >= STABLE_AFTER:
                child.backoff = FIRST_BACKOFF
            child.restart_at = now + child.backoff
            tail = _tail(child.log)
            self.say(
                f"{child.name} exited with code {code}; restarting in {child.backoff:.0f} s"
                + (f" (log {child.log}; last line: {tail})" if tail else "")
            )
            # Its process group may still hold grandchildren (a flow run's process).
            _signal_group(child.proc, signal.SIGKILL)
            child.backoff = min(MAX_BACKOFF, child.backoff * 2)
        for child in self.children:
            if child.restart_at is not None and now >= child.restart_at:
                child.proc = self._spawn(child.argv, child.log)
                child.started, child.restart_at = now, None
                child.restarts += 1
                self.say(f"{child.name} restarted (restart {child.restarts})")

    def stop(self, *, first: Sequence[str] = (), first_signal: int = signal.SIGINT) -> None:
        """Stop in reverse order of start: the children named in `first` alone with
        `first_signal`, then the rest with SIGTERM; SIGKILL to what is left after a
        grace period."""
        rest = list(reversed(self.children))
        leading = [c for c in rest if c.name in first]
        rest = [c for c in rest if c.name not in first]
        _stop_together(leading, first_signal)
        _stop_together(rest, signal.SIGTERM)
        self.children.clear()


def _tail(log: Path) -> str:
    with contextlib.suppress(OSError):
        lines = log.read_text(errors="replace").strip().splitlines()
        return lines[-1][:300] if lines else ""
    return ""


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _stop_together(children: list[Child], sig: int) -> None:
    alive = [c for c in children if c.proc.poll() is None]
    for child in alive:
        _signal_group(child.proc, sig)
    deadline = time.monotonic() + 20
    for child in alive:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.proc.wait(max(0.1, deadline - time.monotonic()))
    for child in children:
        # The group may hold grandchildren (flow run processes) even when the child is gone.
        _signal_group(child.proc, signal.SIGKILL)
        if child.proc.poll() is None:
            child.proc.wait(10)
