"""Prefect's tag concurrency check is skipped only for tag sets that no limit applies to."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from prefect import flow, tags, task
from prefect.client.orchestration import PrefectClient, get_client
from prefect.context import TagsContext

from tasks._tagcheck import TagChecks, all_concurrency_limits, prefect_no_limits_cache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def empty_cache() -> Iterator[None]:
    found = prefect_no_limits_cache()
    assert found is not None, "Prefect moved its cache of limit-free tag sets"
    cache, lock = found
    with lock:
        cache.clear()
    yield
    with lock:
        cache.clear()


def cached(*names: str) -> bool:
    found = prefect_no_limits_cache()
    assert found is not None
    cache, lock = found
    with lock:
        return bool(cache.get(frozenset(f"tag:{n}" for n in names), False))


def checks(limited: set[str], clock: Clock) -> TagChecks:
    reading = TagChecks(read_limits=lambda: set(limited), clock=clock, max_age=10)
    reading.refresh()
    return reading


def test_a_tag_set_without_limits_is_cleared_in_prefects_cache() -> None:
    clock = Clock()
    assert checks({"tag:other", "fleet-instance-a"}, clock).clear(["instance:a", "channel:stable"])
    assert cached("instance:a", "channel:stable")


def test_a_tag_set_with_one_limited_tag_is_left_to_prefect() -> None:
    clock = Clock()
    reading = checks({"tag:channel:stable"}, clock)
    assert not reading.clear(["instance:a", "channel:stable"])
    assert not cached("instance:a", "channel:stable")


def test_an_old_reading_clears_nothing() -> None:
    clock = Clock()
    reading = checks(set(), clock)
    clock.now += 10.5
    assert not reading.clear(["instance:a"])
    assert not cached("instance:a")


def test_no_reading_clears_nothing_and_a_failed_one_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def unreachable() -> set[str]:
        raise ConnectionError("server down")

    with TagChecks(read_limits=unreachable, every=60) as reading:
        assert not reading.clear(["instance:a"])
    assert not cached("instance:a")
    assert "could not read the concurrency limits: server down" in caplog.text


def test_no_tags_clear_nothing() -> None:
    assert not checks(set(), Clock()).clear([])


def test_the_reading_is_refreshed_while_the_block_runs() -> None:
    limited: set[str] = set()
    with TagChecks(read_limits=lambda: set(limited), every=0.05) as reading:
        assert reading.clear(["channel:stable"])
        limited.add("tag:channel:stable")  # created while the rollout runs
        deadline = time.monotonic() + 5
        while reading.clear(["channel:stable"]) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not reading.clear(["channel:stable"])


@pytest.mark.usefixtures("prefect_server")
class TestWithTheServer:
    @pytest.fixture
    def counted(self, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
        """The tag sets the engine asked the server about."""
        asked: list[list[str]] = []
        real = PrefectClient.increment_concurrency_slots_with_lease

        async def counting(client: PrefectClient, *args: Any, **kwargs: Any) -> Any:
            asked.append(sorted(kwargs["names"]))
            return await real(client, *args, **kwargs)

        monkeypatch.setattr(PrefectClient, "increment_concurrency_slots_with_lease", counting)
        return asked

    def test_the_engine_skips_the_request_for_a_cleared_tag_set(self, counted) -> None:
        tag = f"instance:{uuid.uuid4().hex[:8]}"

        @task
        def deploy() -> str:
            return "deployed"

        @flow
        def rollout() -> list[str]:
            with TagChecks() as reading, tags(tag):
                assert reading.clear(TagsContext.get().current_tags)
                cleared = deploy()
            uncleared = deploy.with_options(tags=[f"{tag}-other"])()
            return [cleared, uncleared]

        assert rollout() == ["deployed", "deployed"]
        assert counted == [[f"tag:{tag}-other"]]

    def test_a_tag_limit_on_the_server_is_seen_and_never_cleared(self) -> None:
        tag = f"channel:{uuid.uuid4().hex[:8]}"
        with get_client(sync_client=True) as client:
            client.upsert_global_concurrency_limit_by_name(f"tag:{tag}", 5)
            try:
                assert f"tag:{tag}" in all_concurrency_limits(client)
                with TagChecks() as reading:
                    assert not reading.clear([tag, "instance:a"])
                    assert reading.clear(["instance:a"])
            finally:
                client.delete_global_concurrency_limit_by_name(f"tag:{tag}")
