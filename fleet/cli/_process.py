"""What a short command does for its own speed: fewer collector passes, and
work shared with forked copies of itself on the machine's other cores."""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

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
    each child sends its lines back through a pipe. A child that fails or is
    killed leaves its part to be done again here, so the answer never depends
    on a child. Lines must not contain a newline (JSON lines never do).
    """
    pending: list[tuple[int, int, int]] = []  # (part, child, read end), in part order
    for k in range(1, parts):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: its part, then out without running the parent's cleanup
            status = 1
            try:
                # Only the parent reads: a child keeping an earlier child's read
                # end would keep that child writing after the parent stopped.
                for fd in [read_end, *(r for _, _, r in pending)]:
                    os.close(fd)
                with os.fdopen(write_end, "wb") as pipe:
                    pipe.write("\n".join(work(k, parts)).encode("utf-8", "surrogatepass"))
                status = 0
            finally:
                os._exit(status)
        os.close(write_end)
        pending.append((k, pid, read_end))
    try:
        yield from work(0, parts)
        while pending:
            k, pid, read_end = pending.pop(0)
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
        for _, pid, read_end in pending:
            os.close(read_end)
            os.waitpid(pid, 0)
