"""Warm starts: a flow run's process forked from one that has imported Prefect and Fleet.

A process worker starts every flow run in a new interpreter, which imports Prefect and
Fleet's flows (about 1.5 s of CPU on a 2-core machine) before it runs anything. Here a
*warm starter* imports them once; a flow run's process is forked from it.

- The work pool's command is the *launcher*, `python -m deployments.warmstart` (this
  module imports only the standard library, so it starts in milliseconds). It hands the
  run's environment, directory and standard streams to the warm starter named by
  FLEET_WARM_SOCKET and stays the process the worker watches: it passes signals on to
  the flow run's process and exits as that process did (its code, or its signal).
- The *warm starter*, `python -m deployments.warmstart serve --socket PATH`, forks a
  process per request that runs the flow run as `python -m prefect.engine` would, in the
  run's environment and directory.
- Without a warm starter (FLEET_WARM_SOCKET unset, nothing listening, or it declines)
  the launcher becomes `python -m prefect.engine` itself: a cold start, as before.

The warm starter declines, and exits so that its supervisor starts a fresh one, once a
module it imported from Fleet's code changed on disk or a site-packages directory changed
(a package installed or upgraded): a forked run never runs code older than a cold start
would. It also declines a run that names another code directory or another Python.

A flow run's process ends with its launcher: if the launcher is killed, the flow run's
process gets SIGTERM (and SIGKILL 30 s later), as a cold-started process would die with
it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import selectors
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

__all__ = ["SOCKET_VARIABLE", "Request", "command", "launch", "main", "serve", "use_in_work_pool"]

SOCKET_VARIABLE = "FLEET_WARM_SOCKET"
CODE_DIR_VARIABLE = "FLEET_CODE_DIR"
# Signals the launcher passes on to the flow run's process.
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1)
# After its launcher is gone, a flow run's process has this long to end on SIGTERM.
ORPHAN_GRACE_SECONDS = 30.0
# What a flow run's process runs: `python -m prefect.engine`, warm or cold.
ENGINE = "prefect.engine"
_HEADER = struct.Struct("!I")
_MAX_REQUEST = 1 << 20  # an environment of 1 MB is not a run's


@dataclass(frozen=True)
class Request:
    """What a launcher hands over: the run's environment, directory and Python."""

    env: dict[str, str]
    cwd: str
    executable: str

    def to_bytes(self) -> bytes:
        return json.dumps(
            {"env": self.env, "cwd": self.cwd, "executable": self.executable}
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Request:
        """The request in `data`; ValueError naming what is wrong with it."""
        raw = json.loads(data)
        if not isinstance(raw, dict):
            raise ValueError(f"a request is an object, not {type(raw).__name__}")
        env, cwd, executable = raw.get("env"), raw.get("cwd"), raw.get("executable")
        if not (
            isinstance(env, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
        ):
            raise ValueError("a request's env maps names to strings")
        if not isinstance(cwd, str) or not isinstance(executable, str):
            raise ValueError("a request's cwd and executable are strings")
        return cls(env=env, cwd=cwd, executable=executable)


# -- the launcher -------------------------------------------------------------------


class _Declined(Exception):
    """No process was forked: the launcher starts the run cold."""


def launch() -> NoReturn:
    """The work pool's command: the run through the warm starter, or a cold start."""
    path = os.environ.get(SOCKET_VARIABLE, "")
    if path:
        # Signals wait until the flow run's process is known, then go to it.
        signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
        try:
            conn, pid = _hand_over(path)
        except _Declined as exc:
            print(f"warm start: {exc}; starting the flow run cold", file=sys.stderr, flush=True)
        else:
            _exit_as(_follow(conn, pid))
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
    os.execv(sys.executable, [sys.executable, "-m", ENGINE])


def _hand_over(path: str) -> tuple[socket.socket, int]:
    """Send the request; the pid of the forked process, or _Declined before any fork."""
    request = Request(env=dict(os.environ), cwd=os.getcwd(), executable=sys.executable)
    payload = request.to_bytes()
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.settimeout(30)
        conn.connect(path)
        socket.send_fds(conn, [_HEADER.pack(len(payload))], [0, 1, 2])
        conn.sendall(payload)
        reply = _read_line(conn)
    except OSError as exc:
        conn.close()
        raise _Declined(f"no warm starter at {path} ({exc})") from None
    if "pid" not in reply:
        conn.close()
        raise _Declined(str(reply.get("declined", "no answer")))
    conn.settimeout(None)
    return conn, int(reply["pid"])


def _follow(conn: socket.socket, pid: int) -> int:
    """Pass signals on to `pid` until the warm starter reports how it ended."""

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    for sig in FORWARDED:
        signal.signal(sig, forward)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
    try:
        reply = _read_line(conn)
    except OSError:
        reply = {}
    if "exit" not in reply:
        print("warm start: the warm starter ended before the flow run's process", file=sys.stderr)
        return 1
    return int(reply["exit"])


def _exit_as(code: int) -> NoReturn:
    """Exit with `code`; a negative one is a signal, raised on this process."""
    sys.stdout.flush()
    sys.stderr.flush()
    if code < 0:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [-code])
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        time.sleep(1)
        code = 128 - code
    os._exit(code)


def _read_line(conn: socket.socket) -> dict[str, Any]:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > _MAX_REQUEST:
            raise OSError("reply too long")
    return json.loads(data) if data.strip() else {}


# -- the warm starter ---------------------------------------------------------------


@dataclass
class _Starter:
    """The warm starter's state: what it imported and the runs it forked."""

    socket_path: Path
    code_dir: Path | None
    fingerprint: tuple[tuple[str, int, int], ...] = ()
    children: dict[int, tuple[socket.socket, int]] = field(default_factory=dict)
    stale: str = ""

    def fresh(self) -> str:
        """Why a fork would now run older code than a cold start ('' if it would not)."""
        if self.stale:
            return self.stale
        now = _fingerprint(self.code_dir)
        if now != self.fingerprint:
            changed = sorted({f[0] for f in set(now) ^ set(self.fingerprint)})
            self.stale = f"code changed since the warm start ({', '.join(changed[:3])})"
        return self.stale

    def refusal(self, request: Request) -> str:
        """Why this request is not forked ('' if it is)."""
        if os.path.realpath(request.executable) != os.path.realpath(sys.executable):
            return f"the run's Python is {request.executable}, the warm starter's {sys.executable}"
        wanted = request.env.get(CODE_DIR_VARIABLE)
        if wanted and self.code_dir is not None and Path(wanted).resolve() != self.code_dir:
            return f"the run's code is in {wanted}, the warm starter's in {self.code_dir}"
        if threading.active_count() != 1:
            return "the warm starter has threads running; it cannot fork safely"
        return self.fresh()


def serve(socket_path: Path, modules: Sequence[str] = ()) -> Request | None:
    """Import `modules`, then fork a process per request until SIGTERM or SIGINT.

    Returns the request in a forked process (the caller runs the flow run), and None in
    the warm starter when it stops."""
    code_dir = os.environ.get(CODE_DIR_VARIABLE)
    starter = _Starter(
        socket_path=socket_path, code_dir=Path(code_dir).resolve() if code_dir else None
    )
    if starter.code_dir is not None:
        # A cold run imports Fleet from its code directory (the pull step moves there
        # first); so does the warm starter, whatever else installed Fleet.
        sys.path.insert(0, str(starter.code_dir))
    for name in modules:
        __import__(name)
    starter.fingerprint = _fingerprint(starter.code_dir)
    with contextlib.suppress(FileNotFoundError):
        socket_path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(socket_path))
    os.chmod(socket_path, 0o600)
    listener.listen(64)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, None)
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    print(f"warm starter: ready on {socket_path} ({len(sys.modules)} modules)", flush=True)
    forked: Request | None = None
    try:
        while forked is None and not stopping and not (starter.stale and not starter.children):
            for key, _ in selector.select(timeout=1.0):
                if key.data is None:
                    forked = _accept(starter, listener, selector)
                    if forked is not None:
                        break
                else:
                    _reap(starter, selector, key.data)
    finally:
        if forked is None:
            selector.close()
            listener.close()
            with contextlib.suppress(FileNotFoundError):
                socket_path.unlink()
    for sig, handler in previous.items():
        signal.signal(sig, handler)
    return forked


def _accept(
    starter: _Starter, listener: socket.socket, selector: selectors.BaseSelector
) -> Request | None:
    """Read one request and fork its process; the request, in that process only."""
    conn, _ = listener.accept()
    fds: list[int] = []
    try:
        conn.settimeout(10)
        header, fds, _, _ = socket.recv_fds(conn, _HEADER.size, 3)
        while len(header) < _HEADER.size:
            more = conn.recv(_HEADER.size - len(header))
            if not more:
                raise OSError("the launcher went away")
            header += more
        (size,) = _HEADER.unpack(header)
        if size > _MAX_REQUEST or len(fds) != 3:
            raise ValueError(f"malformed request ({size} bytes, {len(fds)} streams)")
        data = b""
        while len(data) < size:
            more = conn.recv(size - len(data))
            if not more:
                raise OSError("the launcher went away")
            data += more
        request = Request.from_bytes(data)
        refusal = starter.refusal(request)
    except Exception as exc:  # whatever a request holds, the warm starter keeps serving
        _close(fds)
        _reply(conn, {"declined": f"bad request: {exc}"})
        conn.close()
        return None
    if refusal:
        _close(fds)
        _reply(conn, {"declined": refusal})
        conn.close()
        if starter.stale:
            print(f"warm starter: {refusal}; stopping for a fresh start", flush=True)
        return None
    pid = os.fork()
    if pid == 0:
        selector.close()
        listener.close()
        for other, pidfd in starter.children.values():
            other.close()
            os.close(pidfd)
        _become(request, conn, fds)
        return request
    _close(fds)
    pidfd = os.pidfd_open(pid)
    starter.children[pid] = (conn, pidfd)
    selector.register(pidfd, selectors.EVENT_READ, pid)
    _reply(conn, {"pid": pid})
    run = request.env.get("PREFECT__FLOW_RUN_ID", "?")
    print(f"warm starter: forked {pid} for flow run {run}", flush=True)
    return None


def _reap(starter: _Starter, selector: selectors.BaseSelector, pid: int) -> None:
    conn, pidfd = starter.children.pop(pid)
    selector.unregister(pidfd)
    os.close(pidfd)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    _reply(conn, {"exit": code})
    conn.close()
    print(f"warm starter: {pid} exited with code {code}", flush=True)


def _become(request: Request, conn: socket.socket, fds: list[int]) -> None:
    """In the forked process: take the run's streams, environment and directory."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    _close(fds)
    os.environ.clear()
    os.environ.update(request.env)
    os.chdir(request.cwd)
    # As `python -m`: the working directory first on the path.
    sys.path[0] = request.cwd
    unbuffered = bool(request.env.get("PYTHONUNBUFFERED"))
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(write_through=unbuffered, line_buffering=True)  # type: ignore[union-attr]
    conn.settimeout(None)
    threading.Thread(target=_end_with_launcher, args=(conn,), daemon=True).start()


def _end_with_launcher(conn: socket.socket) -> None:
    """SIGTERM this process when its launcher is gone (SIGKILL after the grace)."""
    with contextlib.suppress(OSError):
        while conn.recv(1):
            pass
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(ORPHAN_GRACE_SECONDS)
    os.kill(os.getpid(), signal.SIGKILL)


def run_module(module: str = ENGINE) -> None:
    """In the forked process: what `python -m <module>` runs (the flow run's engine)."""
    import importlib.util
    import runpy

    if "prefect.context" in sys.modules:
        from prefect.context import refresh_global_settings_context
        from prefect.logging.configuration import setup_logging

        # Prefect read its settings, and set up logging, when the warm starter imported
        # it; the run's settings are those of its environment.
        refresh_global_settings_context()
        setup_logging(incremental=False)
    spec = importlib.util.find_spec(module)
    sys.argv = [spec.origin if spec is not None and spec.origin else module]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def _fingerprint(code_dir: Path | None) -> tuple[tuple[str, int, int], ...]:
    """Each imported module's file under `code_dir`, and each site-packages directory,
    with its modification time and size."""
    paths: set[str] = set()
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if file and code_dir is not None and Path(file).resolve().is_relative_to(code_dir):
            paths.add(str(Path(file).resolve()))
    paths.update(p for p in sys.path if p.endswith("site-packages"))
    out = []
    for path in sorted(paths):
        try:
            st = os.stat(path)
        except OSError:
            out.append((path, -1, -1))
        else:
            out.append((path, st.st_mtime_ns, st.st_size))
    return tuple(out)


def _reply(conn: socket.socket, message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        conn.sendall(json.dumps(message).encode() + b"\n")


def _close(fds: Iterable[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def default_modules() -> list[str]:
    """What a flow run imports: Prefect's engine and every flow of the catalog."""
    from deployments.catalog import FLOWS

    flows = [e.entrypoint.split(":")[0].removesuffix(".py").replace("/", ".") for e in FLOWS]
    return [
        "prefect.flow_engine",
        "prefect.task_engine",
        "prefect.deployments.steps",
        "prefect.logging.handlers",
        "prefect._internal.control_listener",
        *flows,
    ]


def command(python: str | None = None) -> str:
    """The launcher's command line for a work pool (this Python, by default)."""
    import shlex

    return shlex.join([python or sys.executable, "-m", "deployments.warmstart"])


def use_in_work_pool(pool: str, python: str | None = None, *, enabled: bool = True) -> bool:
    """Make the launcher the command of the process work pool `pool` (its base job
    template's default; a deployment's job variables can still set another), or, not
    `enabled`, Prefect's own. True if this changed the pool."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolUpdate
    from prefect.workers.process import ProcessWorker

    wanted = command(python) if enabled else None
    with get_client(sync_client=True) as client:
        # A pool no worker has joined yet has an empty template: the process worker's.
        template = (
            client.read_work_pool(pool).base_job_template
            or ProcessWorker.get_default_base_job_template()
        )
        variable = template["variables"]["properties"]["command"]
        if variable.get("default") == wanted:
            return False
        variable["default"] = wanted
        client.update_work_pool(pool, WorkPoolUpdate(base_job_template=template))
    return True


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        launch()
    parser = argparse.ArgumentParser(
        prog="python -m deployments.warmstart",
        description="Without arguments: start the flow run of this environment warm, or "
        "cold. `serve`: the warm starter.",
    )
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--socket", type=Path, required=True, help="the socket to listen on")
    parser.add_argument(
        "--module", action="append", default=None, help="a module to import (default: the flows)"
    )
    parser.add_argument(
        "--run", default=ENGINE, help=f"the module a forked process runs ({ENGINE})"
    )
    parsed = parser.parse_args(args)
    request = serve(parsed.socket.resolve(), parsed.module or default_modules())
    if request is None:
        return 0
    run_module(parsed.run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
