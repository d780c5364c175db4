"""Per-instance locks: a wave takes all its instances' limits in one request, or none."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.concurrency._asyncio import ConcurrencySlotAcquisitionError

from tasks.deploying import ensure_instance_locks, lock_name, locked

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture(scope="module")
def names() -> Iterator[list[str]]:
    """A wave of instances, more than an event may relate, with their limits; removed after."""
    tag = uuid.uuid4().hex[:8]
    made = [f"lock-{tag}-{i:03d}" for i in range(110)]
    ensure_instance_locks.fn(made)
    yield made

    def delete(name: str) -> None:
        with get_client(sync_client=True) as client:
            client.delete_global_concurrency_limit_by_name(lock_name(name))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(delete, made))


def active(names: list[str]) -> list[int]:
    with get_client(sync_client=True) as client:
        return [
            client.read_global_concurrency_limit_by_name(lock_name(n)).active_slots for n in names
        ]


class Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_a_wave_holds_every_lock_then_none(names):
    errors = Errors()
    logger = logging.getLogger("prefect.events")
    logger.addHandler(errors)
    seen: dict[str, list[int]] = {}

    @flow
    def wave() -> None:
        with locked(list(reversed(names)), timeout=30):
            seen["inside"] = active(names)

    try:
        wave()
    finally:
        logger.removeHandler(errors)
    assert seen["inside"] == [1] * len(names)
    assert active(names) == [0] * len(names)
    # One event per lock acquired and released. Prefect's own `concurrency()`
    # relates each to every other lock of its request: with more than 100 locks
    # the events broke Prefect's limit of 100 related resources and were lost.
    assert errors.messages == []


def test_a_held_lock_times_out_and_the_wave_takes_none(names):
    taken, release = threading.Event(), threading.Event()

    def holder() -> None:
        with locked([names[-1]], timeout=10):
            taken.set()
            release.wait(30)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert taken.wait(30)
        with pytest.raises(TimeoutError), locked(names, timeout=1.5):
            pytest.fail("acquired a lock another holder has")
        assert active(names) == [0] * (len(names) - 1) + [1]
    finally:
        release.set()
        thread.join(30)
    assert active(names) == [0] * len(names)


def test_the_wave_waits_for_a_lock_released_in_time(names):
    taken, release = threading.Event(), threading.Event()

    def holder() -> None:
        with locked([names[0]], timeout=10):
            taken.set()
            release.wait(30)

    thread = threading.Thread(target=holder)
    thread.start()
    assert taken.wait(30)
    threading.Timer(1.0, release.set).start()
    try:
        with locked(names, timeout=30):
            assert release.is_set()  # granted only once the holder let go
            assert active(names) == [1] * len(names)
    finally:
        release.set()
        thread.join(30)
    assert active(names) == [0] * len(names)


def test_an_instance_without_a_limit_is_an_error_and_the_wave_takes_none(names):
    stray = f"lock-missing-{uuid.uuid4().hex[:8]}"
    missing = pytest.raises(ConcurrencySlotAcquisitionError, match=lock_name(stray))
    with missing, locked([*names, stray], timeout=5):
        pytest.fail("deployed without a lock")
    assert active(names) == [0] * len(names)


def test_an_empty_wave_takes_nothing():
    with locked([], timeout=1):
        pass


def test_a_wave_that_fails_releases_every_lock_and_says_so(names, monkeypatch):
    import tasks.deploying

    emitted: list[tuple[str, str]] = []
    emit = tasks.deploying._emit_concurrency_event

    def spy(phase, limit, *args, **kwargs):
        emitted.append((phase, limit.name))
        return emit(phase, limit, *args, **kwargs)

    monkeypatch.setattr(tasks.deploying, "_emit_concurrency_event", spy)
    wave = names[:3]
    with pytest.raises(RuntimeError, match="deploy went wrong"), locked(wave, timeout=10):
        raise RuntimeError("deploy went wrong")
    assert active(names) == [0] * len(names)
    locks = sorted(lock_name(n) for n in wave)
    assert sorted(n for p, n in emitted if p == "acquired") == locks
    assert sorted(n for p, n in emitted if p == "released") == locks
