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
  the launcher becomes `python -m prefect.engine` itself: a cold start.

A run is never run twice nor on other code than a cold start would use:
- The forked process waits for the launcher's go, sent once the launcher knows its pid
  and passes signals on; a launcher that gave up (and started the run cold) or died
  sends none, and the forked process ends without running anything.
- The warm starter declines a run whose environment differs from its own (but for
  Prefect's per-run variables, `PREFECT__*`), whose Python is another, or whose
  FLEET_CODE_DIR is another. Once a module it imported from Fleet's code, or a
  site-packages directory, has changed it declines every run, and exits when the runs
  it forked have ended, for its supervisor to start a fresh one.

A forked process lives in a process group of its own and ends with its launcher (which
passes SIGTERM, SIGINT, SIGHUP, SIGQUIT and SIGUSR1 on). If the launcher is gone after it
passed a signal on, that was the worker's hard kill: the run is SIGKILLed at once.
Otherwise (its worker's process group killed, say) the run gets SIGTERM, for Prefect's
engine to report it Crashed once the flow is loaded, and SIGKILL 10 s later. A warm
starter that stops (SIGTERM) takes no more runs and exits when its runs have ended.

What is the warm starter's, not the run's: the string-hash seed, resource limits,
cgroup, scheduling priority and CPU affinity. The umask is the run's.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn

__all__ = ["SOCKET_VARIABLE", "Request", "command", "launch", "main", "serve", "use_in_work_pool"]

SOCKET_VARIABLE = "FLEET_WARM_SOCKET"
CODE_DIR_VARIABLE = "FLEET_CODE_DIR"
# What a flow run's process runs: `python -m prefect.engine`, warm or cold.
ENGINE = "prefect.engine"
# Signals the launcher passes on to the flow run's process.
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1)
# After its launcher is gone, a flow run's process has this long to end on SIGTERM.
ORPHAN_GRACE_SECONDS = 10.0
# How long a launcher waits for the warm starter's answer before starting cold.
ANSWER_SECONDS = 30.0
# How long the warm starter waits for a whole request.
REQUEST_SECONDS = 5.0
_GO = b"g"
_SIGNALLED = b"s"
_HEADER = struct.Struct("!I")
_CREDENTIALS = struct.Struct("3i")  # SO_PEERCRED: pid, uid, gid
_MAX_REQUEST = 1 << 20  # an environment of 1 MB is not a run's


def _per_run(name: str) -> bool:
    """The variables a run's environment may hold that the warm starter's does not:
    Prefect's own per-run ones, and the socket the launcher found the warm starter by."""
    return name.startswith("PREFECT__") or name == SOCKET_VARIABLE


@dataclass(frozen=True)
class Request:
    """What a launcher hands over: the run's environment, directory and Python."""

    env: dict[str, str]
    cwd: str
    executable: str
    prefix: str
    umask: int = 0o022

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Request:
        """The request in `data`; ValueError naming what is wrong with it."""
        raw = json.loads(data)
        if not isinstance(raw, dict):
            raise ValueError(f"a request is an object, not {type(raw).__name__}")
        env = raw.get("env")
        if not (
            isinstance(env, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
        ):
            raise ValueError("a request's env maps names to strings")
        strings = [raw.get(k) for k in ("cwd", "executable", "prefix")]
        if not all(isinstance(v, str) for v in strings):
            raise ValueError("a request's cwd, executable and prefix are strings")
        umask = raw.get("umask", 0o022)
        if type(umask) is not int or not 0 <= umask <= 0o777:
            raise ValueError(f"a request's umask is 0 to 0o777, not {umask!r}")
        cwd, executable, prefix = strings
        return cls(env=env, cwd=cwd, executable=executable, prefix=prefix, umask=umask)  # type: ignore[arg-type]


class _Lines:
    """JSON messages, one a line, read from a socket (two may come in one read)."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.buffer = b""

    def next(self) -> dict[str, Any]:
        """The next message; {} once the peer has closed. OSError, ValueError if garbled."""
        while b"\n" not in self.buffer:
            chunk = self.conn.recv(4096)
            if not chunk:
                return {}
            self.buffer += chunk
            if len(self.buffer) > _MAX_REQUEST:
                raise ValueError("message too long")
        line, _, self.buffer = self.buffer.partition(b"\n")
        message = json.loads(line)
        if not isinstance(message, dict):
            raise ValueError(f"not a message: {line[:80]!r}")
        return message


def _same_user(conn: socket.socket) -> bool:
    """Whether the peer of a Unix socket runs as this process's user."""
    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDENTIALS.size)
    return bool(_CREDENTIALS.unpack(raw)[1] == os.getuid())


# -- the launcher -------------------------------------------------------------------


class _Declined(Exception):
    """The warm starter will not run this: the launcher starts the run cold."""


def launch() -> NoReturn:
    """The work pool's command: the run through the warm starter, or a cold start."""
    path = os.environ.get(SOCKET_VARIABLE, "")
    if path:
        # Signals wait until the flow run's process is known, then go to it.
        signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
        try:
            conn, lines, pid = _hand_over(path)
            code = _follow(conn, lines, pid)
        except _Declined as exc:
            came = [sig for sig in FORWARDED if sig in signal.sigpending()]
            if came:  # held back while it handed over: it was for the run
                _not_started(str(exc), came[0])
            # From here a signal ends the launcher, before the cold start says it starts.
            for sig in FORWARDED:
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
            print(f"warm start: {exc}; starting the flow run cold", file=sys.stderr, flush=True)
        else:
            _exit_as(code)
    # The connection is closed on exec (a socket is not inherited): a process forked for
    # this request after all gets no go, and ends without running anything.
    os.execv(sys.executable, [sys.executable, "-m", ENGINE])


def _hand_over(path: str) -> tuple[socket.socket, _Lines, int]:
    """Send the request; the pid of the forked process, or _Declined."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        umask = os.umask(0o022)
        os.umask(umask)
        request = Request(
            env=dict(os.environ),
            cwd=os.getcwd(),
            executable=sys.executable,
            prefix=sys.prefix,
            umask=umask,
        )
        payload = request.to_bytes()
        conn.settimeout(ANSWER_SECONDS)
        conn.connect(path)
        if not _same_user(conn):
            raise _Declined(f"the warm starter at {path} runs as another user")
        socket.send_fds(conn, [_HEADER.pack(len(payload))], [0, 1, 2])
        conn.sendall(payload)
        lines = _Lines(conn)
        reply = lines.next()
    except (OSError, ValueError) as exc:
        conn.close()
        raise _Declined(f"no answer from a warm starter at {path} ({exc})") from None
    except _Declined:
        conn.close()
        raise
    pid = reply.get("pid")
    if type(pid) is not int or pid <= 0:
        conn.close()
        raise _Declined(str(reply.get("declined", f"a strange answer: {reply}")))
    conn.settimeout(None)
    return conn, lines, pid


def _follow(conn: socket.socket, lines: _Lines, pid: int) -> int:
    """Pass signals on to `pid`, let it run, and return how it ended; _Declined if it
    failed to set itself up (it then ran nothing)."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:  # it has ended already: nothing to pass a signal on to
        pidfd = -1
    forwarded: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        forwarded.append(signum)
        with contextlib.suppress(OSError):
            # Told first: a launcher SIGKILLed after it passed a signal on is the
            # worker's hard kill, and the run is then SIGKILLed at once.
            conn.send(_SIGNALLED)
        with contextlib.suppress(OSError):
            if pidfd >= 0:
                signal.pidfd_send_signal(pidfd, signum)

    for sig in FORWARDED:
        signal.signal(sig, forward)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
    with contextlib.suppress(OSError):  # it may have ended before the go
        conn.sendall(_GO)
    try:
        reply = lines.next()
    except (OSError, ValueError):
        reply = {}
    if "declined" in reply:
        # The forked process failed before the go, so nothing ran: start cold, unless
        # a signal was passed on meanwhile (it was for the run: it ends the launcher).
        # One from now on waits, held back, for the launcher to see it pending.
        signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
        if forwarded:
            _not_started(str(reply["declined"]), forwarded[0])
        raise _Declined(str(reply["declined"]))
    if type(reply.get("exit")) is not int:
        print("warm start: the warm starter ended before the flow run's process", file=sys.stderr)
        return 1
    return int(reply["exit"])


def _not_started(why: str, signum: int) -> NoReturn:
    """A signal for the run came before it could start: end by it, start nothing."""
    name = signal.Signals(signum).name
    print(f"warm start: {why}; {name} came first: the flow run is not started", file=sys.stderr)
    _exit_as(-signum)


def _exit_as(code: int) -> NoReturn:
    """Exit with `code`; a negative one is a signal, raised on this process."""
    sys.stdout.flush()
    sys.stderr.flush()
    if code < 0:
        with contextlib.suppress(OSError, ValueError):  # SIGKILL has no handler to reset
            signal.signal(-code, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [-code])
        os.kill(os.getpid(), -code)
        time.sleep(1)
        code = 128 - code
    os._exit(code)


# -- the warm starter ---------------------------------------------------------------


@dataclass
class _Starter:
    """The warm starter's state: what it imported and the runs it forked."""

    socket_path: Path
    code_dir: str | None  # as named: a symbolic link moved to a new release is a change
    resolved_code_dir: Path | None
    environment: _Environment
    watched: list[str] = field(default_factory=list)
    fingerprint: tuple[tuple[int, int], ...] = ()
    children: dict[int, tuple[socket.socket, int]] = field(default_factory=dict)
    stale: str = ""

    def watch(self, imported_after_ns: int) -> None:
        """Watch the files of the modules imported from Fleet's code, and the
        site-packages directories. A file changed since the imports began is stale at
        once: the module may hold its older text."""
        site = sorted({str(Path(p).resolve()) for p in sys.path if _is_site(p)})
        files = set()
        for module in list(sys.modules.values()):
            file = getattr(module, "__file__", None)
            if not file or self.resolved_code_dir is None:
                continue
            path = Path(file).resolve()
            if path.is_relative_to(self.resolved_code_dir) and not any(
                path.is_relative_to(s) for s in site
            ):
                files.add(str(path))
        self.watched = sorted(files) + site
        self.fingerprint = _stat_all(self.watched)
        if any(mtime >= imported_after_ns for mtime, _ in self.fingerprint):
            self.stale = "code changed while the warm starter imported it"

    def fresh(self) -> str:
        """Why a fork would now run older code than a cold start ('' if it would not)."""
        now_at = Path(self.code_dir).resolve() if self.code_dir is not None else None
        if not self.stale and now_at != self.resolved_code_dir:
            self.stale = f"{self.code_dir} now leads to {now_at}"
        if not self.stale:
            now = _stat_all(self.watched)
            changed = [
                f for f, a, b in zip(self.watched, now, self.fingerprint, strict=True) if a != b
            ]
            if changed:
                self.stale = f"code changed since the warm start ({', '.join(changed[:3])})"
        if not self.stale and threading.active_count() != 1:
            self.stale = "the warm starter has threads running, and cannot fork safely"
        return self.stale

    def refusal(self, request: Request) -> str:
        """Why this request is not forked ('' if it is)."""
        if request.prefix != sys.prefix or (
            os.path.realpath(request.executable) != os.path.realpath(sys.executable)
        ):
            return f"the run's Python is {request.executable}, the warm starter's {sys.executable}"
        wanted = request.env.get(CODE_DIR_VARIABLE)
        if wanted and self.code_dir is not None and wanted != self.code_dir:
            return f"the run's code is in {wanted}, the warm starter's in {self.code_dir}"
        differ = _differences(_environment(request.env, request.cwd), self.environment)
        if differ:
            return f"the run's environment differs from the warm starter's: {', '.join(differ[:5])}"
        return self.fresh()


def serve(socket_path: Path, modules: Sequence[str] = ()) -> Request | None:
    """Import `modules`, then fork a process per request until SIGTERM or SIGINT.

    Returns the request in a forked process (the caller runs the flow run), and None in
    the warm starter when it stops."""
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError as exc:
        raise SystemExit(f"warm starter: this system has no pidfd_open ({exc})") from None
    code_dir = os.environ.get(CODE_DIR_VARIABLE) or None
    starter = _Starter(
        socket_path=socket_path,
        code_dir=code_dir,
        resolved_code_dir=Path(code_dir).resolve() if code_dir else None,
        environment=_environment(dict(os.environ), os.getcwd()),
    )
    started_in = sys.path[0]
    if starter.resolved_code_dir is not None:
        # A cold run imports Fleet from its code directory (the pull step moves there
        # first); so does the warm starter, whatever else installed Fleet.
        sys.path.insert(0, str(starter.resolved_code_dir))
    imported_after = time.time_ns()
    for name in modules:
        __import__(name)
    starter.watch(imported_after)
    with contextlib.suppress(FileNotFoundError):
        socket_path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(socket_path))
    os.chmod(socket_path, 0o600)
    bound = os.stat(socket_path).st_ino
    listener.listen(64)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, None)
    owner = os.getpid()
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    handled = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.signal(sig, stop) for sig in handled}
    print(f"warm starter: ready on {socket_path} ({len(sys.modules)} modules)", flush=True)
    if starter.stale:
        print(f"warm starter: {starter.stale}; stopping for a fresh start", flush=True)
    try:
        while starter.children or not (stopping or starter.stale):
            if (stopping or starter.stale) and listener.fileno() >= 0:
                # No more runs: launchers find nothing and start cold.
                selector.unregister(listener)
                listener.close()
                _unlink(socket_path, bound)
            for key, _ in selector.select(timeout=1.0):
                if key.data is not None:
                    _reap(starter, selector, key.data)
                    continue
                # Signals wait while a process is forked: the forked one starts with
                # the default handlers, and keeps them blocked until the launcher's go.
                signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
                try:
                    forked = _accept(starter, listener, selector)
                    if forked is not None:  # in the forked process
                        for sig, handler in previous.items():
                            signal.signal(sig, handler)
                        _become(forked.request, forked.conn, forked.fds, started_in)
                        return forked.request
                finally:
                    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
    except BaseException as exc:
        if os.getpid() != owner:
            # The forked process failed before it ran anything: it ends here, leaving
            # the warm starter's socket and state alone (as a cold one would on SIGINT).
            if isinstance(exc, KeyboardInterrupt):
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGINT)
            import traceback

            traceback.print_exc()
            os._exit(1)
        raise
    finally:
        if os.getpid() == owner:
            selector.close()
            listener.close()
            _unlink(socket_path, bound)
    return None


@dataclass(frozen=True)
class _Forked:
    """In a forked process: its request, its connection to the launcher, its streams."""

    request: Request
    conn: socket.socket
    fds: list[int]


def _accept(
    starter: _Starter, listener: socket.socket, selector: selectors.BaseSelector
) -> _Forked | None:
    """Read one request and fork its process; in that process, what it is to run."""
    try:
        conn, _ = listener.accept()
    except OSError as exc:  # out of file descriptors, say: the launcher starts cold
        print(f"warm starter: could not accept a run ({exc})", flush=True)
        return None
    fds: list[int] = []
    try:
        request, fds = _read_request(conn)
        refusal = starter.refusal(request)
    except Exception as exc:  # whatever a request holds, the warm starter keeps serving
        _close(fds)
        _reply(conn, {"declined": f"bad request: {exc}"})
        conn.close()
        return None
    if not refusal:
        try:
            pid = os.fork()
        except OSError as exc:
            refusal = f"could not fork ({exc})"
    if refusal:
        _close(fds)
        _reply(conn, {"declined": refusal})
        conn.close()
        after = "; stopping for a fresh start" if starter.stale else ""
        print(f"warm starter: declined a run: {refusal}{after}", flush=True)
        return None
    if pid == 0:
        selector.close()
        listener.close()
        for other, pidfd in starter.children.values():
            other.close()
            os.close(pidfd)
        return _Forked(request, conn, fds)
    _close(fds)
    try:
        pidfd = os.pidfd_open(pid)
        selector.register(pidfd, selectors.EVENT_READ, pid)
    except OSError as exc:  # out of file descriptors, say: the forked process never runs
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        _reply(conn, {"declined": f"could not watch the forked process ({exc})"})
        conn.close()
        return None
    starter.children[pid] = (conn, pidfd)
    _reply(conn, {"pid": pid})
    run = request.env.get("PREFECT__FLOW_RUN_ID", "?")
    print(f"warm starter: forked {pid} for flow run {run}", flush=True)
    return None


def _read_request(conn: socket.socket) -> tuple[Request, list[int]]:
    """The request on `conn` and the three streams it passed, within REQUEST_SECONDS."""
    deadline = time.monotonic() + REQUEST_SECONDS

    def remaining() -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request took too long")
        return left

    if not _same_user(conn):
        raise PermissionError("the launcher runs as another user")
    conn.settimeout(remaining())
    header, fds, _, _ = socket.recv_fds(conn, _HEADER.size, 3)
    try:
        while len(header) < _HEADER.size:
            conn.settimeout(remaining())
            more = conn.recv(_HEADER.size - len(header))
            if not more:
                raise ConnectionError("the launcher went away")
            header += more
        (size,) = _HEADER.unpack(header)
        if size > _MAX_REQUEST or len(fds) != 3:
            raise ValueError(f"malformed request ({size} bytes, {len(fds)} streams)")
        data = b""
        while len(data) < size:
            conn.settimeout(remaining())
            more = conn.recv(size - len(data))
            if not more:
                raise ConnectionError("the launcher went away")
            data += more
        return Request.from_bytes(data), fds
    except BaseException:
        _close(fds)
        raise


def _reap(starter: _Starter, selector: selectors.BaseSelector, pid: int) -> None:
    conn, pidfd = starter.children.pop(pid)
    selector.unregister(pidfd)
    os.close(pidfd)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    _reply(conn, {"exit": code})
    conn.close()
    print(f"warm starter: {pid} exited with code {code}", flush=True)


def _become(request: Request, conn: socket.socket, fds: list[int], started_in: str) -> None:
    """In the forked process: a process group of its own, the run's streams, environment
    and directory; then wait for the launcher's go. A process that cannot set itself up
    tells its launcher, which starts the run cold, and ends before the go."""
    try:
        _set_up(request, fds, started_in)
    except Exception as exc:
        _reply(conn, {"declined": f"the forked process could not set itself up ({exc!r})"})
        raise
    conn.settimeout(None)
    signalled = False
    while (byte := conn.recv(1)) != _GO:
        if byte != _SIGNALLED:  # the launcher gave up, or died: nothing is run
            os._exit(1)
        signalled = True  # the signal itself waits, held back, until the go
    threading.Thread(target=_end_with_launcher, args=(conn, signalled), daemon=True).start()


def _set_up(request: Request, fds: list[int], started_in: str) -> None:
    os.setpgid(0, 0)
    # Moved above 2 first: a stream received as 0, 1 or 2 is not overwritten early.
    moved = [fcntl.fcntl(fd, fcntl.F_DUPFD, 3) for fd in fds]
    _close(fds)
    for target, fd in enumerate(moved):
        os.dup2(fd, target)
    _close(moved)
    os.umask(request.umask)
    os.environ.clear()
    os.environ.update(request.env)
    time.tzset()
    os.chdir(request.cwd)
    # As `python -m`: the run's directory first on the path, not the warm starter's.
    sys.path[:] = [request.cwd, *(p for p in sys.path if p != started_in)]
    unbuffered = bool(request.env.get("PYTHONUNBUFFERED"))
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(write_through=unbuffered, line_buffering=True)  # type: ignore[union-attr]


def _end_with_launcher(conn: socket.socket, signalled: bool) -> None:
    """End this process when its launcher is gone. The launcher passes signals on, so
    it was SIGKILLed, or failed. After it passed a signal on, that is the worker's hard
    kill: SIGKILL at once. Otherwise (its worker's process group killed, say) SIGTERM
    first, so that Prefect's engine can report the run Crashed, SIGKILL after a grace."""
    with contextlib.suppress(OSError):
        while data := conn.recv(64):
            signalled = signalled or _SIGNALLED in data
    if not signalled:
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
    # Run afresh as __main__, as `python -m` does (other modules keep the imported one).
    sys.modules.pop(module, None)
    spec = importlib.util.find_spec(module)
    sys.argv = [spec.origin if spec is not None and spec.origin else module]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


@dataclass(frozen=True)
class _Environment:
    """What of a run's environment a forked process would take from the warm starter
    instead: its variables (but for the per-run ones), and Prefect's settings as Prefect
    reads them there (from the variables, and .env, prefect.toml or pyproject.toml in
    its directory)."""

    variables: dict[str, str]
    settings: dict[str, str]


# Files in a directory that Prefect's settings read.
_SETTINGS_FILES = (".env", "prefect.toml", "pyproject.toml")


def _environment(env: dict[str, str], cwd: str) -> _Environment:
    variables = {k: v for k, v in env.items() if not _per_run(k)}
    files = []
    for name in _SETTINGS_FILES:
        with contextlib.suppress(OSError):
            files.append((name, Path(cwd, name).read_bytes()))
    key = (tuple(sorted(variables.items())), cwd, tuple(files))
    if key not in _SEEN:
        if len(_SEEN) >= 8:
            _SEEN.clear()
        _SEEN[key] = _Environment(variables, _read_settings(variables, cwd))
    return _SEEN[key]


# The last environments read (a worker's runs share one): reading Prefect's settings
# takes tens of milliseconds.
_SEEN: dict[object, _Environment] = {}


def _read_settings(env: dict[str, str], cwd: str) -> dict[str, str]:
    """Prefect's settings, by their own names, as a process with `env` in `cwd` reads
    them (the warm starter is single-threaded: it lends its own environment)."""
    from prefect.settings import Settings

    saved, here = dict(os.environ), os.getcwd()
    try:
        os.environ.clear()
        os.environ.update(env)
        os.chdir(cwd)
        settings = Settings().to_environment_variables(exclude_unset=True)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        os.chdir(here)
    return {k: str(v) for k, v in settings.items()}


def _differences(a: _Environment, b: _Environment) -> list[str]:
    """The names whose values differ: a variable that names a setting counts as that
    setting (a worker passes its settings on under their own names)."""
    settings = {
        k for k in a.settings.keys() | b.settings.keys() if a.settings.get(k) != b.settings.get(k)
    }
    variables = {
        k
        for k in a.variables.keys() | b.variables.keys()
        if a.variables.get(k) != b.variables.get(k)
        and not (k in a.settings and k in b.settings and k not in settings)
    }
    return sorted(settings | variables)


def _is_site(path: str) -> bool:
    return path.endswith(("site-packages", "dist-packages"))


def _stat_all(paths: Sequence[str]) -> tuple[tuple[int, int], ...]:
    out = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append((-1, -1))
        else:
            out.append((st.st_mtime_ns, st.st_size))
    return tuple(out)


def _unlink(path: Path, inode: int) -> None:
    """Remove the socket this warm starter bound, not one a newer warm starter bound."""
    with contextlib.suppress(OSError):
        if os.stat(path).st_ino == inode:
            path.unlink()


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


def use_in_work_pool(pool: str, python: str | None = None) -> bool:
    """Make the launcher the command of the process work pool `pool` (its base job
    template's default; a deployment's job variables can still set another). True if
    this changed the pool."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolUpdate
    from prefect.workers.process import ProcessWorker

    wanted = command(python)
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
