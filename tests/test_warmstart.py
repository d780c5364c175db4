"""The warm starter and its launcher (deployments.warmstart), as real processes.

The forked process runs a small module of the test's (`--run`) instead of Prefect's
engine: what is checked is the hand-over (environment, directory, streams), exit codes
and signals both ways, the launcher's death, stale code and the requests it declines.
The stack's tests run real flow runs through it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from deployments.warmstart import SOCKET_VARIABLE

# The module a forked process runs: reports what it was given, then does what it is told.
TARGET = """
import json, os, signal, sys, time
import code_here
print(json.dumps({
    "pid": os.getpid(),
    "ppid": os.getppid(),
    "cwd": os.getcwd(),
    "argv0": sys.argv[0],
    "wanted": os.environ.get("WANTED"),
    "gone": os.environ.get("GONE"),
    "version": code_here.VERSION,
}), flush=True)
print("to stderr", file=sys.stderr, flush=True)
line = sys.stdin.readline().strip()
what = os.environ.get("DO", "exit:0")
if what.startswith("exit:"):
    sys.exit(int(what.split(":")[1]))
if what.startswith("sleep"):
    with open(os.environ["PIDFILE"], "w") as f:
        f.write(str(os.getpid()))
    time.sleep(float(what.partition(":")[2] or 120))
"""


@dataclass
class Warm:
    proc: subprocess.Popen[str]
    sock: Path
    code: Path
    log: Path

    def launch(self, **env: str) -> subprocess.Popen[str]:
        full = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT__")}
        full |= {SOCKET_VARIABLE: str(self.sock), "FLEET_CODE_DIR": str(self.code)} | env
        return subprocess.Popen(
            [sys.executable, "-m", "deployments.warmstart"],
            cwd=self.code,
            env=full,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def _wait(predicate, what: str, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _start(tmp_path: Path, pythonpath: Path | None = None) -> Warm:
    code = tmp_path / "code"
    code.mkdir()
    (code / "code_here.py").write_text("VERSION = 1\n")
    (code / "warm_target.py").write_text(TARGET)
    sock = tmp_path / "w.sock"
    log = tmp_path / "warm.log"
    env = dict(os.environ, FLEET_CODE_DIR=str(code), PYTHONPATH=str(pythonpath or code))
    env["GONE"] = "warm"
    argv = [sys.executable, "-m", "deployments.warmstart", "serve", "--socket", str(sock)]
    argv += ["--module", "code_here", "--run", "warm_target"]
    with log.open("w") as out:
        proc = subprocess.Popen(
            argv, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, text=True
        )
    _wait(lambda: "ready" in log.read_text(), "the warm starter")
    return Warm(proc, sock, code, log)


@pytest.fixture
def warm(tmp_path: Path) -> Iterator[Warm]:
    started = _start(tmp_path)
    yield started
    started.proc.terminate()
    started.proc.wait(10)


def _report(launched: subprocess.Popen[str], stdin: str = "go\n") -> tuple[dict, str, int]:  # type: ignore[type-arg]
    out, err = launched.communicate(stdin, timeout=30)
    first = out.splitlines()[0] if out.strip() else "{}"
    return json.loads(first), err, launched.returncode


def test_a_run_is_forked_with_the_launchers_environment_directory_and_streams(
    warm: Warm,
) -> None:
    launched = warm.launch(WANTED="yes", DO="exit:0")
    report, err, code = _report(launched)
    assert code == 0
    assert report["ppid"] == warm.proc.pid  # forked by the warm starter, not a new interpreter
    assert report["pid"] != launched.pid
    assert report["cwd"] == str(warm.code)
    assert report["wanted"] == "yes"
    assert report["argv0"].endswith("warm_target.py")
    assert "to stderr" in err  # stderr, and stdin ("go") reached it too
    assert "cold" not in err


def test_the_exit_code_of_the_run_is_the_launchers(warm: Warm) -> None:
    assert _report(warm.launch(DO="exit:3"))[2] == 3
    # The warm starter forks again after a run ended (it is not used up).
    assert _report(warm.launch(DO="exit:0"))[2] == 0
    assert warm.proc.poll() is None


def test_the_warm_starters_own_environment_does_not_leak_into_a_run(warm: Warm) -> None:
    assert _report(warm.launch(DO="exit:0"))[0]["gone"] is None
    assert _report(warm.launch(DO="exit:0", GONE="given"))[0]["gone"] == "given"


def test_runs_in_parallel_are_each_forked(warm: Warm) -> None:
    launched = [warm.launch(DO=f"exit:{i}") for i in range(4)]
    reports = [_report(p) for p in launched]
    assert [code for _, _, code in reports] == [0, 1, 2, 3]
    assert len({r["pid"] for r, _, _ in reports}) == 4


def test_a_signal_to_the_launcher_reaches_the_run_and_the_launcher_ends_by_it(
    tmp_path: Path, warm: Warm
) -> None:
    pidfile = tmp_path / "pid"
    launched = warm.launch(DO="sleep", PIDFILE=str(pidfile))
    assert launched.stdin is not None
    launched.stdin.write("go\n")
    launched.stdin.flush()
    _wait(lambda: pidfile.exists() and pidfile.read_text(), "the run to start")
    run_pid = int(pidfile.read_text())
    launched.send_signal(signal.SIGTERM)
    launched.communicate(timeout=20)
    assert launched.returncode == -signal.SIGTERM
    _wait(lambda: not _alive(run_pid), "the run to end")


def test_a_killed_launcher_takes_its_run_with_it(tmp_path: Path, warm: Warm) -> None:
    pidfile = tmp_path / "pid"
    launched = warm.launch(DO="sleep", PIDFILE=str(pidfile))
    assert launched.stdin is not None
    launched.stdin.write("go\n")
    launched.stdin.flush()
    _wait(lambda: pidfile.exists() and pidfile.read_text(), "the run to start")
    run_pid = int(pidfile.read_text())
    launched.kill()
    launched.communicate(timeout=20)
    _wait(lambda: not _alive(run_pid), "the orphaned run to end")
    assert warm.proc.poll() is None


def test_a_run_outlives_its_dead_warm_starter_and_its_launcher_then_exits_1(
    tmp_path: Path, warm: Warm
) -> None:
    pidfile = tmp_path / "pid"
    launched = warm.launch(DO="sleep:2", PIDFILE=str(pidfile))
    assert launched.stdin is not None
    launched.stdin.write("go\n")
    launched.stdin.flush()
    _wait(lambda: pidfile.exists() and pidfile.read_text(), "the run to start")
    warm.proc.kill()
    warm.proc.wait(10)
    _, err = launched.communicate(timeout=30)
    # The run went on to its end; nothing was left to say how it ended.
    assert launched.returncode == 1
    assert "the warm starter ended before the flow run's process" in err


def test_changed_code_is_never_run_warm_the_warm_starter_stops_for_a_fresh_start(
    warm: Warm,
) -> None:
    time.sleep(0.01)
    (warm.code / "code_here.py").write_text("VERSION = 2  # changed\n")
    _, err = warm.launch(DO="exit:0").communicate("go\n", timeout=60)
    # Declined before any fork: the launcher started the engine cold instead.
    assert "code changed since the warm start" in err and "code_here.py" in err
    assert "starting the flow run cold" in err
    assert warm.proc.wait(10) == 0  # its supervisor starts a fresh one


def test_a_run_of_other_code_or_another_python_is_declined(tmp_path: Path, warm: Warm) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _, err = warm.launch(DO="exit:0", FLEET_CODE_DIR=str(elsewhere)).communicate("", timeout=60)
    assert f"the run's code is in {elsewhere}" in err and "starting the flow run cold" in err
    assert warm.proc.poll() is None


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x00\x00\x00\x05{}{}{",
        b"\xff\xff\xff\xff",
        b"\x00\x00\x00\x02[]",
        b'\x00\x00\x00\x0b{"env": 1}',
    ],
    ids=["empty", "bad json", "huge length", "not an object", "env not a map"],
)
def test_a_malformed_request_is_declined_and_the_warm_starter_keeps_serving(
    warm: Warm, payload: bytes
) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
        raw.connect(str(warm.sock))
        if payload:
            socket.send_fds(raw, [payload[:4]], [0, 1, 2])
            raw.sendall(payload[4:])
        raw.shutdown(socket.SHUT_WR)
        raw.settimeout(15)
        answer = raw.recv(4096)
    assert b"declined" in answer
    assert _report(warm.launch(DO="exit:0"))[2] == 0


def test_fleets_code_is_imported_from_the_code_directory_as_a_cold_run_would(
    tmp_path: Path,
) -> None:
    # Another copy of the code (an installed Fleet, say) comes first on the path.
    installed = tmp_path / "installed"
    installed.mkdir()
    (installed / "code_here.py").write_text("VERSION = 'installed'\n")
    started = _start(tmp_path, pythonpath=installed)
    try:
        assert _report(started.launch(DO="exit:0"))[0]["version"] == 1
    finally:
        started.proc.terminate()
        started.proc.wait(10)


def test_without_a_warm_starter_the_launcher_starts_the_engine_cold(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT__")}
    env[SOCKET_VARIABLE] = str(tmp_path / "nobody.sock")
    done = subprocess.run(
        [sys.executable, "-m", "deployments.warmstart"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "no warm starter at" in done.stderr and "starting the flow run cold" in done.stderr


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return status != "Z"
