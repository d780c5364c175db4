"""The rollout loop's hand-over of finished deploys (`flows._rollout._settle`)."""

from __future__ import annotations

from queue import Queue
from typing import Any

import pytest
from prefect.exceptions import Pause
from prefect.states import Completed, Failed

from flows._rollout import _settle
from tasks.deploying import InstanceOutcome

DONE = InstanceOutcome("a1", 3, "succeeded")


class Finished:
    """A finished deploy's future, as much of it as `_settle` uses."""

    def __init__(self, state: Any, *, wait_raises: BaseException | None = None) -> None:
        self.state = state
        self.wait_raises = wait_raises

    def wait(self) -> None:
        if self.wait_raises:
            raise self.wait_raises

    def result(self) -> InstanceOutcome:
        return DONE


def settled(future: Finished, counts: list[InstanceOutcome]) -> tuple[Any, ...]:
    into: Queue[Any] = Queue()
    _settle(future, into=into, count=counts.append)  # type: ignore[arg-type]
    return into.get_nowait()


def test_a_completed_deploy_comes_with_its_outcome_counted_in_its_thread() -> None:
    future, counts = Finished(Completed()), []
    assert settled(future, counts) == (future, DONE, True)
    assert counts == [DONE]


def test_a_failed_deploy_comes_without_one_and_uncounted() -> None:
    future, counts = Finished(Failed()), []
    assert settled(future, counts) == (future, None, False)
    assert counts == []  # the loop reads and counts it


def test_an_error_reading_it_still_hands_it_over() -> None:
    future, counts = Finished(Completed(), wait_raises=RuntimeError("lost")), []
    assert settled(future, counts) == (future, None, False)


def test_a_suspension_signal_still_hands_it_over_and_goes_on() -> None:
    future = Finished(Completed(), wait_raises=Pause())
    into: Queue[Any] = Queue()
    with pytest.raises(Pause):
        _settle(future, into=into)  # type: ignore[arg-type]
    assert into.get_nowait() == (future, None, False)
