"""Per-instance locks: a wave takes its instances' limits a few requests at a time."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator

import pytest
from prefect import flow
from prefect.client.orchestration import get_client

from tasks.deploying import LOCKS_PER_REQUEST, ensure_instance_locks, lock_name, locked

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture
def names() -> Iterator[list[str]]:
    """More instances than one lock request takes, with their limits; removed afterwards."""
    tag = uuid.uuid4().hex[:8]
    made = [f"lock-{tag}-{i:03d}" for i in range(LOCKS_PER_REQUEST * 2 + 7)]
    ensure_instance_locks.fn(made)
    yield made
    with get_client(sync_client=True) as client:
        for name in made:
            client.delete_global_concurrency_limit_by_name(lock_name(name))


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


def test_a_wave_larger_than_one_request_holds_every_lock_then_none(names):
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
    # One event per lock acquired and released, each related to its request's
    # other locks: a single request for the whole wave broke Prefect's limit of
    # 100 related resources and lost every event.
    assert errors.messages == []


def test_a_held_lock_in_a_later_request_times_out_and_releases_the_earlier_ones(names):
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
