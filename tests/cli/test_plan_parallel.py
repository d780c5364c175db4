"""`fleet plan --json` shares a large compile with forked copies of itself.

The answer must not depend on it: the same bytes as one process, in the same
order, whether a child succeeds, fails or is killed. These run in fresh
processes, as a user runs the command (the test runner's own process has
threads, and the command does not fork a threaded process).
"""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from fleet.cli._files import load_fleet_file
from fleet.cli._process import MIN_ITEMS_PER_PART, parts_for, usable_cores
from fleet.cli.plan import write_plan_json
from fleet.core.plan import compile_plan

ROOT = Path(__file__).resolve().parents[2]
FLEET = Path(sys.executable).parent / "fleet"
AT = "2026-11-26T12:00:00Z"


@pytest.fixture(scope="module")
def big_fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example fleet's instances, copied under new names to 1,200."""
    data = yaml.safe_load((ROOT / "examples" / "fleet.yaml").read_text())
    base = data["instances"]
    data["instances"] = [
        {**base[i % len(base)], "name": f"{base[i % len(base)]['name']}-{i}"} for i in range(1200)
    ]
    for key in ("pins", "risk_acceptances"):  # they name the original instances
        data[key] = [
            entry
            for entry in data.get(key, [])
            if not str(entry.get("scope", "")).startswith("instance:") and "instance" not in entry
        ]
    path = tmp_path_factory.mktemp("fleet") / "big.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def serial_json(path: Path, **selectors: object) -> str:
    state = load_fleet_file(path).to_state()
    out = io.StringIO()
    at = datetime(2026, 11, 26, 12, tzinfo=UTC)
    write_plan_json(compile_plan(state, at, **selectors), out)  # type: ignore[arg-type]
    return out.getvalue()


@pytest.mark.skipif(usable_cores() < 2, reason="one core: the command does not fork")
def test_a_large_fleet_is_shared_between_processes() -> None:
    script = "from fleet.cli._process import parts_for; print(parts_for(1200))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert int(out.stdout) == min(usable_cores(), 1200 // MIN_ITEMS_PER_PART)
    assert parts_for(MIN_ITEMS_PER_PART - 1) == 1


@pytest.mark.parametrize(
    ("argv", "selectors"),
    [
        ((), {}),
        (("--channel", "stable"), {"channels": ["stable"]}),
        (("--label", "tier=gold"), {"labels": {"tier": "gold"}}),
    ],
)
def test_the_json_is_the_same_bytes_as_one_process_writes(
    big_fleet: Path, argv: tuple[str, ...], selectors: dict[str, object]
) -> None:
    out = subprocess.run(
        [str(FLEET), "plan", str(big_fleet), "--json", "--at", AT, *argv],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout == serial_json(big_fleet, **selectors)
    assert out.stderr == ""


PARTS = textwrap.dedent(
    """
    import os, signal, sys
    from fleet.cli._process import forked_parts

    parent = os.getpid()
    mode = sys.argv[1]

    def work(k, n):
        if os.getpid() != parent and k == 2:
            if mode == "raise":
                raise RuntimeError("part 2 fails in the child")
            if mode == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
        return [f"{k}/{n}:{i}" for i in range(k * 3)]

    print(" ".join(forked_parts(work, 4)))
    """
)


@pytest.mark.parametrize("mode", ["ok", "raise", "kill"])
def test_parts_come_back_in_order_and_a_failed_child_is_redone(mode: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", PARTS, mode], capture_output=True, text=True, check=True
    )
    expected = [f"{k}/4:{i}" for k in range(4) for i in range(k * 3)]
    assert out.stdout.split() == expected
    assert "Traceback" not in out.stderr


def test_no_child_is_left_behind_when_the_reader_stops_early() -> None:
    script = textwrap.dedent(
        """
        import os
        from fleet.cli._process import forked_parts

        lines = forked_parts(lambda k, n: [str(k)] * 100_000, 3)
        next(lines)
        lines.close()
        try:
            os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            print("none left")
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "none left"


def test_fork_is_refused_in_a_threaded_process() -> None:
    # This process (the test runner) may have threads; a forked copy of a
    # threaded process can inherit a lock held for good.
    import threading

    if threading.active_count() == 1:
        started = threading.Event()
        stop = threading.Event()
        thread = threading.Thread(target=lambda: (started.set(), stop.wait()))
        thread.start()
        started.wait()
        try:
            assert parts_for(10_000) == 1
        finally:
            stop.set()
            thread.join()
    else:
        assert parts_for(10_000) == 1


def test_parts_are_done_here_when_no_child_can_start() -> None:
    script = textwrap.dedent(
        """
        import os
        from fleet.cli import _process

        def no_fork():
            raise OSError(11, "Resource temporarily unavailable")

        before = len(os.listdir("/proc/self/fd"))
        _process.os.fork = no_fork
        lines = list(_process.forked_parts(lambda k, n: [f"{k}"], 3))
        print(" ".join(lines), len(os.listdir("/proc/self/fd")) - before)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "1", "2", "0"]  # every part, no descriptor left open


def test_a_child_ends_with_its_killed_parent(tmp_path: Path) -> None:
    marks = tmp_path / "child"
    script = textwrap.dedent(
        f"""
        import os, time
        from fleet.cli._process import forked_parts

        parent = os.getpid()

        def work(k, n):
            if os.getpid() != parent:
                open({str(marks)!r}, "w").write(str(os.getpid()))
                time.sleep(60)
            time.sleep(60)
            return []

        list(forked_parts(work, 2))
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        for _ in range(200):
            if marks.exists() and marks.read_text():
                break
            time.sleep(0.05)
        child = int(marks.read_text())
        proc.kill()
        proc.wait()
        for _ in range(100):
            if not Path(f"/proc/{child}").exists():
                break
            try:  # a zombie until its new parent reaps it: gone all the same
                if Path(f"/proc/{child}/stat").read_text().split(") ")[1].startswith("Z"):
                    break
            except (FileNotFoundError, IndexError):
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"child {child} outlived its killed parent")
    finally:
        proc.kill()
