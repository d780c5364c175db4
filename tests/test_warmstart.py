"""The warm starter and its launcher (deployments.warmstart), as real processes.

The forked process runs a small module of the test's (`--run`) instead of Prefect's
engine, told what to do on its standard input: what is checked is the hand-over
(environment, directory, streams), exit codes and signals both ways, the launcher's
death, stale code and the requests it declines. The stack's tests run real flow runs
through it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from deployments.warmstart import SOCKET_VARIABLE, Request

# The module a forked process runs: reports what it was given, then does what its first
# line of input says.
TARGET = """
import json, os, random, signal, sys, time
import code_here
told = json.loads(sys.stdin.readline())
if told.get("ignore_term"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if "pidfile" in told:
    with open(told["pidfile"], "w") as f:
        f.write(str(os.getpid()))
print(json.dumps({
    "pid": os.getpid(),
    "ppid": os.getppid(),
    "pgid": os.getpgid(0),
    "cwd": os.getcwd(),
    "path0": sys.path[0],
    "argv0": sys.argv[0],
    "run": os.environ.get("PREFECT__FLOW_RUN_ID"),
    "tz": time.strftime("%z"),
    "version": code_here.VERSION,
    "umask": os.umask(0),
}), flush=True)
print("to stderr", file=sys.stderr, flush=True)
if told.get("wait"):  # until the test writes a second line
    sys.stdin.readline()
time.sleep(told.get("sleep", 0))
sys.exit(told.get("exit", 0))
"""

CODE = "VERSION = 1\n"


@dataclass
class Warm:
    proc: subprocess.Popen[str]
    sock: Path
    code: Path
    log: Path
    env: dict[str, str]

    def launch(
        self, told: dict[str, object], python: str = sys.executable, **env: str
    ) -> subprocess.Popen[str]:
        """A launcher, as a worker starts it: the warm starter's environment, the socket
        and Prefect's per-run variables, and `env`."""
        full = self.env | {SOCKET_VARIABLE: str(self.sock), "PREFECT__FLOW_RUN_ID": "r1"} | env
        launched = subprocess.Popen(
            [python, "-m", "deployments.warmstart"],
            cwd=self.code,
            env=full,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert launched.stdin is not None
        launched.stdin.write(json.dumps(told) + "\n")
        launched.stdin.flush()
        return launched


def _wait(predicate: Callable[[], object], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _start(
    tmp_path: Path,
    pythonpath: Path | None = None,
    *,
    linked: bool = False,
    env_extra: dict[str, str] | None = None,
    sock: Path | None = None,
) -> Warm:
    code = tmp_path / "code"
    if linked:  # FLEET_CODE_DIR a symbolic link to a release, as deployments do
        (tmp_path / "release-1").mkdir()
        code.symlink_to(tmp_path / "release-1")
    else:
        code.mkdir()
    (code / "code_here.py").write_text(CODE)
    (code / "warm_target.py").write_text(TARGET)
    sock = sock or tmp_path / "w.sock"
    log = tmp_path / "warm.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT__")}
    env |= {"FLEET_CODE_DIR": str(code), "PYTHONPATH": str(pythonpath or code), "TZ": "UTC"}
    env |= env_extra or {}
    argv = [sys.executable, "-m", "deployments.warmstart", "serve", "--socket", str(sock)]
    argv += ["--module", "code_here", "--run", "warm_target"]
    # Files older than the warm start: a file changed while it imports counts as stale.
    past = time.time() - 10
    for f in code.iterdir():
        os.utime(f, (past, past))
    with log.open("w") as out:
        proc = subprocess.Popen(
            argv, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, text=True
        )
    started = Warm(proc, sock, code, log, env)
    try:
        _wait(lambda: "ready" in log.read_text(), "the warm starter")
    except BaseException:
        _stop(started)
        raise
    return started


def _stop(warm: Warm) -> None:
    """Kill the warm starter and whatever runs it forked (each in a group of its own)."""
    warm.proc.kill()
    warm.proc.wait(10)
    for line in warm.log.read_text().splitlines():
        if " forked " in line:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.killpg(int(line.split(" forked ")[1].split()[0]), signal.SIGKILL)


@pytest.fixture(scope="module")
def warm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warm]:
    """One warm starter for the tests that leave it serving."""
    started = _start(tmp_path_factory.mktemp("warm"))
    yield started
    _stop(started)


@pytest.fixture
def own_warm(tmp_path: Path) -> Iterator[Warm]:
    """A warm starter of the test's own, for tests that stop it or change its code."""
    started = _start(tmp_path)
    yield started
    _stop(started)


def _report(
    launched: subprocess.Popen[str], more: str | None = None
) -> tuple[dict[str, object], str, int]:
    out, err = launched.communicate(more, timeout=30)
    first = out.splitlines()[0] if out.strip() else "{}"
    return json.loads(first), err, launched.returncode


def _started(pidfile: Path) -> int:
    _wait(lambda: pidfile.exists() and pidfile.read_text(), "the run to start")
    return int(pidfile.read_text())


def _blocked(pid: int, sig: int) -> bool:
    """Whether process `pid` holds `sig` back (its SigBlk mask in /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = next(line.split()[1] for line in status.splitlines() if line.startswith("SigBlk"))
    return bool(int(mask, 16) & (1 << (sig - 1)))


def _start_like(warm: Warm, extra: dict[str, str]) -> Warm:
    """Another warm starter like `warm`, its environment with `extra`."""
    tmp = warm.code.parent / f"like-{len(list(warm.code.parent.glob('like-*')))}"
    tmp.mkdir()
    started = _start(tmp, env_extra=extra)
    return started


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return status != "Z"


def test_a_run_is_forked_with_the_launchers_streams_directory_umask_and_run_variables(
    warm: Warm,
) -> None:
    launched = warm.launch({"exit": 0})
    report, err, code = _report(launched)
    assert code == 0
    assert report["ppid"] == warm.proc.pid  # forked by the warm starter, not a new interpreter
    assert report["pid"] != launched.pid
    assert report["pgid"] == report["pid"]  # a process group of its own
    assert report["cwd"] == str(warm.code) == report["path0"]
    assert report["run"] == "r1"
    assert report["argv0"] == str(warm.code / "warm_target.py")
    assert report["umask"] == os.umask(os.umask(0o022))  # the launcher's
    assert "to stderr" in err  # stdin (what it was told), stdout and stderr reached it
    assert "cold" not in err


def test_the_exit_code_of_the_run_is_the_launchers_again_and_again(warm: Warm) -> None:
    assert _report(warm.launch({"exit": 3}))[2] == 3
    # The warm starter forks again after a run ended (it is not used up).
    assert [_report(warm.launch({}))[2] for _ in range(2)] == [0, 0]
    assert warm.proc.poll() is None


def test_runs_forked_from_one_process_draw_their_own_retry_jitter() -> None:
    from tasks import deploying

    draws = []
    for _ in range(2):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the forked process
            os.write(write, repr(deploying._JITTER.random()).encode())
            os._exit(0)
        os.close(write)
        draws.append(os.read(read, 64))
        os.close(read)
        os.waitpid(pid, 0)
    assert draws[0] != draws[1]


def test_runs_in_parallel_are_each_forked(warm: Warm) -> None:
    launched = [warm.launch({"exit": i}) for i in range(4)]
    reports = [_report(p) for p in launched]
    assert [code for _, _, code in reports] == [0, 1, 2, 3]
    assert len({r["pid"] for r, _, _ in reports}) == 4


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_launcher_reaches_the_run_and_the_launcher_ends_by_it(
    tmp_path: Path, warm: Warm, sig: signal.Signals
) -> None:
    launched = warm.launch({"sleep": 120, "pidfile": str(tmp_path / "pid")})
    run_pid = _started(tmp_path / "pid")
    launched.send_signal(sig)
    launched.communicate(timeout=20)
    # SIGINT: the run's Python raised KeyboardInterrupt and ended by SIGINT, as a cold
    # one would.
    assert launched.returncode == -sig
    _wait(lambda: not _alive(run_pid), "the run to end")


def test_a_signal_while_the_launcher_hands_over_reaches_the_run_before_it_runs(
    tmp_path: Path, warm: Warm
) -> None:
    # The warm starter is stopped, so the launcher is caught between its request and
    # the answer, with signals held back: SIGTERM then must end the run, not be lost.
    os.kill(warm.proc.pid, signal.SIGSTOP)
    try:
        launched = warm.launch({"pidfile": str(tmp_path / "pid")})
        _wait(lambda: _blocked(launched.pid, signal.SIGTERM), "the launcher to hold signals")
        launched.send_signal(signal.SIGTERM)
    finally:
        os.kill(warm.proc.pid, signal.SIGCONT)
    launched.communicate(timeout=30)
    assert launched.returncode == -signal.SIGTERM
    assert not (tmp_path / "pid").exists()  # ended before it ran anything


def test_a_run_killed_by_sigkill_ends_its_launcher_by_sigkill(tmp_path: Path, warm: Warm) -> None:
    launched = warm.launch({"sleep": 120, "pidfile": str(tmp_path / "pid")})
    os.kill(_started(tmp_path / "pid"), signal.SIGKILL)
    launched.communicate(timeout=20)
    assert launched.returncode == -signal.SIGKILL


def test_a_killed_launcher_takes_its_run_with_it(tmp_path: Path, warm: Warm) -> None:
    launched = warm.launch({"sleep": 120, "pidfile": str(tmp_path / "pid")})
    run_pid = _started(tmp_path / "pid")
    launched.kill()  # its worker's process group killed: the run gets SIGTERM
    launched.communicate(timeout=20)
    _wait(lambda: not _alive(run_pid), "the orphaned run to end", timeout=5)
    assert warm.proc.poll() is None


def test_the_workers_hard_kill_after_a_sigterm_kills_the_run_at_once(
    tmp_path: Path, warm: Warm
) -> None:
    # Prefect kills a run by SIGTERM, then, after a grace, SIGKILL of the pid it started.
    launched = warm.launch({"sleep": 120, "ignore_term": True, "pidfile": str(tmp_path / "pid")})
    run_pid = _started(tmp_path / "pid")
    launched.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert _alive(run_pid)  # it ignores SIGTERM
    launched.kill()
    launched.communicate(timeout=20)
    _wait(lambda: not _alive(run_pid), "the run to be killed", timeout=3)


def test_a_request_whose_launcher_gives_no_go_runs_nothing(tmp_path: Path, warm: Warm) -> None:
    # A launcher that gave up waiting (and started the run cold) or died: the process
    # forked for it waits for the go and ends without running the flow.
    request = Request(
        env=warm.env | {"PREFECT__FLOW_RUN_ID": "r2"},
        cwd=str(warm.code),
        executable=sys.executable,
        prefix=sys.prefix,
    ).to_bytes()
    stdin_r, stdin_w = os.pipe()
    os.write(stdin_w, json.dumps({"pidfile": str(tmp_path / "pid")}).encode() + b"\n")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
        raw.connect(str(warm.sock))
        socket.send_fds(raw, [len(request).to_bytes(4, "big")], [stdin_r, 1, 2])
        raw.sendall(request)
        raw.settimeout(15)
        pid = json.loads(raw.recv(4096))["pid"]
    os.close(stdin_r)
    os.close(stdin_w)
    ended = f"{pid} exited with code 1"
    _wait(lambda: ended in warm.log.read_text(), "the forked process to end")
    assert not (tmp_path / "pid").exists()


def test_a_run_outlives_its_stopped_warm_starter_which_waits_for_it(
    tmp_path: Path, own_warm: Warm
) -> None:
    launched = own_warm.launch({"wait": True, "pidfile": str(tmp_path / "pid")})
    _started(tmp_path / "pid")
    own_warm.proc.terminate()
    # It takes no more runs: the socket is gone at once, the run goes on to its end.
    _wait(lambda: not own_warm.sock.exists(), "the socket to go")
    assert own_warm.proc.poll() is None
    report, _, code = _report(launched, "\n")
    assert code == 0 and report["run"] == "r1"
    assert own_warm.proc.wait(10) == 0


def test_a_run_outlives_its_killed_warm_starter_and_its_launcher_then_exits_1(
    tmp_path: Path, own_warm: Warm
) -> None:
    launched = own_warm.launch({"wait": True, "pidfile": str(tmp_path / "pid")})
    _started(tmp_path / "pid")
    own_warm.proc.kill()
    own_warm.proc.wait(10)
    _, err, code = _report(launched, "\n")
    # The run went on to its end; nothing was left to say how it ended.
    assert code == 1
    assert "the warm starter ended before the flow run's process" in err


def test_changed_code_is_never_run_warm_the_warm_starter_stops_for_a_fresh_start(
    own_warm: Warm,
) -> None:
    (own_warm.code / "code_here.py").write_text("VERSION = 2\n")
    _, err = own_warm.launch({}).communicate(timeout=60)
    # Declined before any fork: the launcher started the engine cold instead.
    assert "code changed since the warm start" in err and "code_here.py" in err
    assert "starting the flow run cold" in err
    assert own_warm.proc.wait(10) == 0  # its supervisor starts a fresh one


def test_a_code_directory_link_moved_to_a_new_release_is_changed_code(tmp_path: Path) -> None:
    started = _start(tmp_path, linked=True)
    try:
        assert _report(started.launch({}))[2] == 0
        (tmp_path / "release-2").mkdir()
        (tmp_path / "release-2" / "code_here.py").write_text("VERSION = 2\n")
        (tmp_path / "code").unlink()
        (tmp_path / "code").symlink_to(tmp_path / "release-2")
        _, err = started.launch({}).communicate(timeout=60)
        assert f"{started.code} now leads to {tmp_path / 'release-2'}" in err
        assert started.proc.wait(10) == 0
    finally:
        _stop(started)


def test_a_run_of_other_code_or_another_environment_is_declined(tmp_path: Path, warm: Warm) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _, err = warm.launch({}, FLEET_CODE_DIR=str(elsewhere)).communicate(timeout=60)
    assert f"the run's code is in {elsewhere}" in err and "starting the flow run cold" in err
    _, err = warm.launch({}, PYTHONPATH=str(elsewhere), TZ="Asia/Tokyo").communicate(timeout=60)
    assert "environment differs from the warm starter's: PYTHONPATH, TZ" in err
    assert "starting the flow run cold" in err
    assert warm.proc.poll() is None


def test_a_run_of_another_python_is_declined(warm: Warm) -> None:
    other = Path(sys.base_prefix) / "bin" / "python3"
    if not other.exists() or sys.prefix == sys.base_prefix:
        pytest.skip("no Python outside this virtual environment")
    # The launcher needs only the standard library; the cold start it falls back to
    # fails there (no Prefect), which is not what is checked.
    root = str(Path(__file__).resolve().parent.parent)
    _, err = warm.launch({}, python=str(other), PYTHONPATH=root).communicate(timeout=60)
    assert f"the run's Python is {other}" in err and "starting the flow run cold" in err


def test_prefect_settings_are_compared_as_prefect_reads_them(warm: Warm) -> None:
    # A worker passes its settings on under their own names (an alias's setting, and
    # "True" for "true"): the same settings, so the run is forked.
    base = {"PREFECT_LOCAL_STORAGE_PATH": "/r", "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true"}
    aliased = _start_like(warm, base)
    try:
        same = {
            "PREFECT_RESULTS_LOCAL_STORAGE_PATH": "/r",
            "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "True",
        }
        _, err, code = _report(aliased.launch({}, **same))
        assert code == 0 and "cold" not in err, err
        # A setting read when a task is made (its default retries) is another run's.
        _, err = aliased.launch({}, PREFECT_TASKS_DEFAULT_RETRIES="3").communicate(timeout=60)
        assert "environment differs from the warm starter's: PREFECT_TASKS_DEFAULT_RETRIES" in err
    finally:
        _stop(aliased)


def test_fleets_code_is_imported_from_the_code_directory_as_a_cold_run_would(
    tmp_path: Path,
) -> None:
    # Another copy of the code (an installed Fleet, say) comes first on the path.
    installed = tmp_path / "installed"
    installed.mkdir()
    (installed / "code_here.py").write_text("VERSION = 'installed'\n")
    started = _start(tmp_path, pythonpath=installed)
    try:
        assert _report(started.launch({}))[0]["version"] == 1
    finally:
        started.proc.terminate()
        started.proc.wait(10)


def _framed(env: dict[str, str], umask: object) -> bytes:
    """A request of this Python whose environment or umask is hostile, framed."""
    body = {"env": env, "cwd": "/", "executable": sys.executable, "prefix": sys.prefix}
    data = json.dumps(body | {"umask": umask}).encode()
    return len(data).to_bytes(4, "big") + data


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x00\x00\x00\x05{}{}{",
        b"\xff\xff\xff\xff",
        b"\x00\x00\x00\x02[]",
        b'\x00\x00\x00\x0b{"env": 1}',
        b"\x00\x00\x00\x10" + b"[" * 16,
        *(
            _framed(env, umask)
            for env, umask in (
                ({"A=B": "x"}, 0o022),
                ({"A": "x\u0000y"}, 0o022),
                ({"A": "\ud800"}, 0o022),
                ({}, float("nan")),
            )
        ),
    ],
    ids=[
        "empty",
        "bad json",
        "huge length",
        "not an object",
        "env not a map",
        "nested",
        "= in a name",
        "NUL in a value",
        "lone surrogate",
        "NaN umask",
    ],
)
def test_a_malformed_request_is_declined_and_the_warm_starter_keeps_serving(
    warm: Warm, payload: bytes
) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
        raw.connect(str(warm.sock))
        # The warm starter may answer and hang up before the rest is sent.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            if payload:
                socket.send_fds(raw, [payload[:4]], [0, 1, 2])
                raw.sendall(payload[4:])
            raw.shutdown(socket.SHUT_WR)
        raw.settimeout(15)
        answer = raw.recv(4096)
    assert b"declined" in answer
    assert _report(warm.launch({}))[2] == 0


def test_a_run_whose_directory_is_gone_is_declined_naming_it(tmp_path: Path, warm: Warm) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    request = Request(
        env=warm.env, cwd=str(gone), executable=sys.executable, prefix=sys.prefix
    ).to_bytes()
    gone.rmdir()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
        raw.connect(str(warm.sock))
        socket.send_fds(raw, [len(request).to_bytes(4, "big")], [0, 1, 2])
        raw.sendall(request)
        raw.settimeout(15)
        answer = b"".join(iter(lambda: raw.recv(4096), b""))
    assert b"declined" in answer and str(gone).encode() in answer
    assert warm.sock.exists() and warm.proc.poll() is None
    assert _report(warm.launch({}))[2] == 0


def test_the_stack_refuses_a_socket_directory_others_reach(tmp_path: Path) -> None:
    from deployments.stack import StackError, _private_directory

    _private_directory(tmp_path / "mine")
    assert (tmp_path / "mine").stat().st_mode & 0o777 == 0o700
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    with pytest.raises(StackError, match="drwxrwxrwx"):
        _private_directory(shared)


LAUNCHER = [sys.executable, "-m", "deployments.warmstart"]


def _alone_env(sock: Path) -> dict[str, str]:
    """A launcher's environment outside any worker: `sock`, and no flow run (a cold
    start's engine then fails at once)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT__")}
    return env | {SOCKET_VARIABLE: str(sock)}


def _launch_alone(sock: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        LAUNCHER, env=_alone_env(sock), capture_output=True, text=True, timeout=120, check=False
    )


def test_without_a_warm_starter_the_launcher_starts_the_engine_cold(tmp_path: Path) -> None:
    done = _launch_alone(tmp_path / "nobody.sock")
    assert "no answer from a warm starter at" in done.stderr
    assert "starting the flow run cold" in done.stderr


# Another user: the system's own Python (it needs no file of the project's) as `nobody`.
NOBODY = 65534
as_root = pytest.mark.skipif(
    os.geteuid() != 0 or not Path("/usr/bin/python3").exists(),
    reason="runs a process as another user: needs root and the system's python3",
)

CLIENT = """
import socket, sys
payload = bytes.fromhex(sys.stdin.read())
with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
    s.connect(sys.argv[1])
    try:
        socket.send_fds(s, [len(payload).to_bytes(4, "big")], [0, 1, 2])
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
    except (BrokenPipeError, ConnectionResetError):
        pass
    s.settimeout(15)
    answer = b""
    try:  # it may hang up on what it left unread: a reset after its answer
        while chunk := s.recv(4096):
            answer += chunk
    except ConnectionResetError:
        pass
    print(answer.decode())
"""

SERVER = """
import os, socket, sys
with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
    s.bind(sys.argv[1])
    os.chmod(sys.argv[1], 0o666)
    s.listen()
    print("listening", flush=True)
    conn, _ = s.accept()
    sys.exit(0 if conn.recv(1) == b"" else 3)  # 3: it was sent something
"""


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory outside the test's own (whose parents are root's alone) that another
    user can reach, and write in."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="warm-shared-", dir="/tmp"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@as_root
def test_a_launcher_of_another_user_is_declined_even_where_the_socket_lets_it_in(
    tmp_path: Path, shared_dir: Path
) -> None:
    """The socket is 0600 in a 0700 directory; were both opened up, the warm starter
    still forks nothing for a process of another user (its uid over SO_PEERCRED)."""
    warm = _start(tmp_path, sock=shared_dir / "w.sock")
    try:
        warm.sock.chmod(0o666)
        request = Request(
            env=warm.env, cwd="/", executable="/usr/bin/python3", prefix=sys.base_prefix
        ).to_bytes()
        sent = subprocess.run(
            ["/usr/bin/python3", "-c", CLIENT, str(warm.sock)],
            input=request.hex(),
            capture_output=True,
            text=True,
            timeout=30,
            cwd="/",
            user=NOBODY,
            group=NOBODY,
            extra_groups=[],
            check=False,
        )
        assert sent.returncode == 0, sent.stderr
        assert "declined" in sent.stdout and "another user" in sent.stdout, sent.stdout
        assert " forked " not in warm.log.read_text()
        assert _report(warm.launch({}))[2] == 0  # and it serves its own user on
    finally:
        _stop(warm)


@as_root
def test_a_launcher_never_hands_its_run_to_a_warm_starter_of_another_user(
    tmp_path: Path, shared_dir: Path
) -> None:
    """Whoever listens on the socket path, the launcher passes its streams and
    environment (Prefect's API key among them) only to a process of its own user."""
    sock = shared_dir / "w.sock"
    listening = subprocess.Popen(
        ["/usr/bin/python3", "-c", SERVER, str(sock)],
        stdout=subprocess.PIPE,
        text=True,
        cwd="/",
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
    )
    try:
        assert listening.stdout is not None
        assert listening.stdout.readline().strip() == "listening"
        done = _launch_alone(sock)
        assert f"the warm starter at {sock} runs as another user" in done.stderr
        assert "starting the flow run cold" in done.stderr
        # It hung up without a byte: the other user's process saw nothing of the run.
        assert listening.wait(30) == 0
    finally:
        listening.kill()
        listening.wait(10)
        if listening.stdout is not None:
            listening.stdout.close()


@contextlib.contextmanager
def _out_of_descriptors(warm: Warm) -> Iterator[None]:
    """The warm starter's open-file limit lowered to what it holds, and the launcher's
    connection and three streams: a forked process cannot take the run's streams."""
    import resource

    # One run first, at the full limit: the warm starter has read (and keeps) Prefect's
    # settings for the launchers' environment, which opens files.
    assert _report(warm.launch({}))[2] == 0
    pid = warm.proc.pid
    held = [int(fd) for fd in os.listdir(f"/proc/{pid}/fd")]
    limit = len(held) + 4
    assert max(held) < limit
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, hard))
    try:
        yield
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))


def test_a_forked_process_that_cannot_set_itself_up_runs_nothing_and_the_run_starts_cold(
    tmp_path: Path,
) -> None:
    """The forked process tells its launcher and ends before the go; the launcher starts
    the run cold, and the warm starter serves the next run."""
    warm = _start(tmp_path)
    try:
        with _out_of_descriptors(warm):
            out, err, code = _report(warm.launch({}))
        assert "could not set itself up" in err and "Too many open files" in err, err
        assert "starting the flow run cold" in err, err
        assert out == {}  # the test's module never ran: Prefect's engine did, cold
        assert code != 0  # (and failed: there is no flow run r1)
        assert warm.proc.poll() is None and warm.sock.exists()
        report, _, code = _report(warm.launch({}))
        assert code == 0 and report["run"] == "r1"
    finally:
        _stop(warm)


def test_a_signal_for_a_run_whose_process_could_not_set_itself_up_ends_the_launcher(
    tmp_path: Path,
) -> None:
    """SIGTERM while the launcher hands over, and the forked process then fails: the
    signal was for the run, so nothing starts cold, and the launcher ends by it."""
    warm = _start(tmp_path)
    try:
        with _out_of_descriptors(warm):
            os.kill(warm.proc.pid, signal.SIGSTOP)
            try:
                launched = warm.launch({})
                _wait(lambda: _blocked(launched.pid, signal.SIGTERM), "the launcher to hold")
                launched.send_signal(signal.SIGTERM)
            finally:
                os.kill(warm.proc.pid, signal.SIGCONT)
            _, err = launched.communicate(timeout=30)
        assert launched.returncode == -signal.SIGTERM, err
        assert "could not set itself up" in err, err
        assert "SIGTERM came first: the flow run is not started" in err, err
        assert "cold" not in err and "Traceback" not in err  # no engine: it would fail on r1
    finally:
        _stop(warm)


@contextlib.contextmanager
def _scripted_warm_starter(sock: Path, script: Callable[[socket.socket], None]) -> Iterator[None]:
    """A stand-in warm starter on `sock` that takes one request, then plays `script` on
    its connection (to hold the launcher at a chosen order of answers)."""
    import threading

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock))
    listener.listen()
    failed: list[BaseException] = []

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            with conn:
                header, fds, _, _ = socket.recv_fds(conn, 4, 3)
                for fd in fds:
                    os.close(fd)
                size = int.from_bytes(header, "big")
                data = b""
                while len(data) < size:
                    data += conn.recv(size - len(data))
                json.loads(data)
                script(conn)
        except BaseException as exc:  # reported by the test
            failed.append(exc)
        finally:
            listener.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield
    thread.join(30)
    assert not thread.is_alive() and not failed, failed


def _send(conn: socket.socket, message: dict[str, object]) -> None:
    conn.sendall(json.dumps(message).encode() + b"\n")


DECLINED = {"declined": "the forked process could not set itself up (OSError(24))"}


@pytest.mark.parametrize("when", ["before its pid", "after the go"])
def test_a_launcher_told_the_forked_process_failed_starts_the_run_cold(
    tmp_path: Path, when: str
) -> None:
    """Both orders the lines can come in: the forked process's before the warm
    starter's pid, or after the launcher sent its go."""
    from deployments.warmstart import _GO

    sleeper = subprocess.Popen(["sleep", "60"])  # stands for the forked process

    def script(conn: socket.socket) -> None:
        if when == "after the go":
            _send(conn, {"pid": sleeper.pid})
            assert conn.recv(1) == _GO
        _send(conn, DECLINED)

    sock = tmp_path / "w.sock"
    try:
        with _scripted_warm_starter(sock, script):
            done = _launch_alone(sock)
        assert f"{DECLINED['declined']}; starting the flow run cold" in done.stderr, done.stderr
        assert sleeper.poll() is None  # sent no signal
    finally:
        sleeper.kill()
        sleeper.wait(10)


def test_a_signal_passed_on_before_the_forked_process_failed_ends_the_launcher(
    tmp_path: Path,
) -> None:
    from deployments.warmstart import _GO, _SIGNALLED

    sleeper = subprocess.Popen(["sleep", "60"])
    launched: list[subprocess.Popen[str]] = []

    def script(conn: socket.socket) -> None:
        _send(conn, {"pid": sleeper.pid})
        assert conn.recv(1) == _GO
        launched[0].send_signal(signal.SIGTERM)
        assert conn.recv(1) == _SIGNALLED  # passed on: the run's process had it
        _send(conn, DECLINED)

    sock = tmp_path / "w.sock"
    try:
        with _scripted_warm_starter(sock, script):
            launched.append(
                subprocess.Popen(
                    LAUNCHER,
                    env=_alone_env(sock),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
            _, err = launched[0].communicate(timeout=60)
        assert launched[0].returncode == -signal.SIGTERM, err
        assert "SIGTERM came first: the flow run is not started" in err, err
        assert "cold" not in err
        assert sleeper.wait(10) == -signal.SIGTERM
    finally:
        sleeper.kill()
        sleeper.wait(10)
