"""The rollout's progress artifact moves as instances finish, without a request per instance."""

from __future__ import annotations

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterId

from tasks.reporting import Progress

pytestmark = pytest.mark.usefixtures("prefect_server")


def shown(progress: Progress) -> float:
    assert progress.artifact_id is not None
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(id=ArtifactFilterId(any_=[progress.artifact_id]))
        )
    return float(artifact.data)  # type: ignore[arg-type]


def test_progress_moves_at_most_once_per_interval_and_always_at_the_end():
    now = [0.0]
    seen: list[float] = []

    @flow
    def rollout() -> None:  # progress artifacts belong to a run, as in a rollout
        progress = Progress(10, every=1.0, clock=lambda: now[0])
        for _ in range(3):
            progress.advance()
        seen.append(shown(progress))  # no second has passed: no request yet
        now[0] = 1.2
        progress.advance()
        seen.append(shown(progress))
        now[0] = 1.3
        progress.advance(5)
        seen.append(shown(progress))
        progress.advance()  # the last one shows at once
        seen.append(shown(progress))

    rollout()
    assert seen == [0.0, 40.0, 40.0, 100.0]
