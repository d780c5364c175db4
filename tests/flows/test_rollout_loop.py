"""The rollout loop's hand-over of finished deploys (`flows._rollout._settle`)."""

from __future__ import annotations

from queue import Queue
from typing import Any

import pytest
from prefect.exceptions import Pause
from prefect.states import Completed, Failed

from flows._rollout import _settle
from tasks.deploying import InstanceOutcome

DONE = [InstanceOutcome("a1", 3, "succeeded")]


class Finished:
    """A finished deploy's future, as much of it as `_settle` uses."""

    def __init__(self, state: Any, *, wait_raises: BaseException | None = None) -> None:
        self.state = state
        self.wait_raises = wait_raises

    def wait(self) -> None:
        if self.wait_raises:
            raise self.wait_raises

    def result(self) -> list[InstanceOutcome]:
        return DONE


def settled(future: Finished) -> tuple[Any, ...]:
    into: Queue[Any] = Queue()
    _settle(future, into=into)  # type: ignore[arg-type]
    return into.get_nowait()


def test_a_completed_deploy_task_comes_with_its_outcomes() -> None:
    future = Finished(Completed())
    assert settled(future) == (future, DONE)


def test_a_failed_deploy_task_comes_without_them() -> None:
    future = Finished(Failed())
    assert settled(future) == (future, None)  # the loop reads, records and counts them


def test_an_error_reading_it_still_hands_it_over() -> None:
    future = Finished(Completed(), wait_raises=RuntimeError("lost"))
    assert settled(future) == (future, None)


def test_a_suspension_signal_still_hands_it_over_and_goes_on() -> None:
    future = Finished(Completed(), wait_raises=Pause())
    into: Queue[Any] = Queue()
    with pytest.raises(Pause):
        _settle(future, into=into)  # type: ignore[arg-type]
    assert into.get_nowait() == (future, None)
