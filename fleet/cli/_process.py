"""What a short command does for its own speed: fewer collector passes, and
work shared with forked copies of itself on the machine's other cores."""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn

__all__ = ["few_collections", "forked_parts", "parts_for", "usable_cores"]

# Below this much work, starting a process costs more than it saves.
MIN_ITEMS_PER_PART = 500
MAX_PARTS = 8


@contextmanager
def few_collections() -> Iterator[None]:
    """Let the cyclic collector run rarely while a command builds a large graph it keeps.

    Planning 10,000 instances makes millions of objects and almost no cycles;
    with Python's default thresholds the collector walks the ever larger heap
    again and again, about a fifth of the command's time.
    """
    before = gc.get_threshold()
    gc.set_threshold(100_000, 50, 100)
    try:
        yield
    finally:
        gc.set_threshold(*before)


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def parts_for(items: int) -> int:
    """How many processes `items` units of work are worth: 1 where forking is not safe."""
    if not hasattr(os, "fork") or threading.active_count() > 1:
        return 1  # a forked copy of a threaded process may hold a lock for good
    return max(1, min(usable_cores(), MAX_PARTS, items // MIN_ITEMS_PER_PART))


def forked_parts(work: Callable[[int, int], list[str]], parts: int) -> Iterator[str]:
    """The lines of `work(0, parts)`, `work(1, parts)`, ... in that order.

    Parts 1 and up run in forked children while this process does part 0;
    each child sends its lines back through a pipe. A part whose child could
    not start, failed or was killed is done again here, so the answer never
    depends on a child. Lines must not contain a newline (JSON lines never do).
    """
    parent = os.getpid()
    children: dict[int, tuple[int, int]] = {}  # part: (child, read end)
    try:
        for k in range(1, parts):
            try:
                read_end, write_end = os.pipe()
            except OSError:
                break  # out of descriptors: the rest is done here
            try:
                pid = os.fork()
            except OSError:
                os.close(read_end)
                os.close(write_end)
                break
            if pid == 0:
                _child(
                    work,
                    k,
                    parts,
                    parent,
                    write_end,
                    [read_end, *(r for _, r in children.values())],
                )
            os.close(write_end)
            children[k] = (pid, read_end)
        yield from work(0, parts)
        for k in range(1, parts):
            if k not in children:
                yield from work(k, parts)
                continue
            pid, read_end = children.pop(k)
            try:
                with os.fdopen(read_end, "rb") as pipe:
                    data = pipe.read()
            finally:
                _, status = os.waitpid(pid, 0)
            if status != 0:
                yield from work(k, parts)
            elif data:
                yield from data.decode("utf-8", "surrogatepass").split("\n")
    finally:
        # Stopped early: a child still writing gets a broken pipe and exits.
        for pid, read_end in children.values():
            os.close(read_end)
            os.waitpid(pid, 0)


def _child(
    work: Callable[[int, int], list[str]],
    k: int,
    parts: int,
    parent: int,
    write_end: int,
    others: list[int],
) -> NoReturn:
    """A forked child: part `k` into the pipe, then out without the parent's cleanup."""
    status = 1
    try:
        _die_with(parent)
        # Only the parent reads: a child keeping an earlier child's read end
        # would keep that child writing after the parent stopped.
        for fd in others:
            os.close(fd)
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write("\n".join(work(k, parts)).encode("utf-8", "surrogatepass"))
        status = 0
    finally:
        os._exit(status)


def _die_with(parent: int) -> None:
    """Have the kernel end this child when its parent ends (Linux), so a killed
    command leaves no copy of itself computing for nobody."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent was gone before the request
        os._exit(1)


_PR_SET_PDEATHSIG = 1
