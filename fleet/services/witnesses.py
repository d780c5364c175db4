"""Witnessed chain heads: publish the audit chain's head outside Fleet's database, and
check the chain against every head published.

Witnesses (`fleet.core.witness` judges them):
- Prefect: a table artifact keyed `fleet-chain-head` (linked to the flow run that
  published it); Prefect's database is a second, independent system;
- a file (`FLEET_WITNESS_FILE`): one JSON line per head, appended and synced; put
  it where Fleet's database writers cannot rewrite it (another host, an
  append-only mount).

Publishing never fails the caller: a witness that cannot be reached is
reported, and the next publication covers the same events.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from fleet.core.audit import ChainVerdict, verify_chain
from fleet.core.errors import InputError
from fleet.core.witness import (
    ChainHead,
    PublishedHead,
    WitnessCheck,
    WitnessStatus,
    check_witnesses,
)
from fleet.db.audit import chain_head, hashes_at, iter_events
from fleet.services._common import now_or_clock, reading
from fleet.settings import get_settings

__all__ = [
    "ARTIFACT_KEY",
    "PublishOutcome",
    "WitnessReport",
    "current_head",
    "publish_head",
    "read_file_heads",
    "read_prefect_heads",
    "verify_witnesses",
]

ARTIFACT_KEY = "fleet-chain-head"
_PAGE = 200


def current_head(*, now: datetime | None = None, engine: Engine | None = None) -> ChainHead:
    """The chain's head as it is now."""
    now = now_or_clock(now)
    with reading(engine) as session:
        seq, digest = chain_head(session)
    return ChainHead(seq, digest, now)


@dataclass(frozen=True, slots=True)
class PublishOutcome:
    """The head published, where it went, and which witnesses failed (with why)."""

    head: ChainHead
    published: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()


def _witness_file(file: Path | None) -> Path | None:
    return file if file is not None else get_settings().witness_file


def _append_line(path: Path, head: ChainHead, flow_run_id: str | None) -> None:
    line = json.dumps({**head.to_json(), "flow_run_id": flow_run_id}, sort_keys=True) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        out.write(line)
        out.flush()
        os.fsync(out.fileno())


def _prefect_api() -> str | None:
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    return str(url) if url else None


def _publish_artifact(head: ChainHead, flow_run_id: str | None) -> None:
    # The client, not `create_table_artifact`: a head is also published outside any
    # run (the CLI) and from a flow's state hook, with the run named explicitly.
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactCreate

    run = None
    if flow_run_id is not None:
        try:
            run = UUID(flow_run_id)
        except ValueError:
            run = None
    with get_client(sync_client=True) as client:
        client.create_artifact(
            ArtifactCreate(
                key=ARTIFACT_KEY,
                type="table",
                description=f"Fleet audit chain head: event {head.seq}, hash {head.hash}",
                data=json.dumps([head.to_json()]),
                flow_run_id=run,
            )
        )


def publish_head(
    *,
    flow_run_id: str | None = None,
    file: Path | None = None,
    prefect: bool = True,
    now: datetime | None = None,
    engine: Engine | None = None,
) -> PublishOutcome:
    """Publish the chain's head to Prefect (when `prefect` and an API is configured)
    and to the witness file (`file`, else `FLEET_WITNESS_FILE`, if set)."""
    head = current_head(now=now, engine=engine)
    published: list[str] = []
    failed: list[str] = []
    path = _witness_file(file)
    if path is not None:
        try:
            _append_line(path, head, flow_run_id)
            published.append(f"file {path}")
        except OSError as exc:
            failed.append(f"file {path}: {exc}")
    if prefect:
        api = _prefect_api()
        if api is None:
            failed.append("prefect: PREFECT_API_URL is not set")
        else:
            try:
                _publish_artifact(head, flow_run_id)
                published.append(f"prefect artifact {ARTIFACT_KEY} at {api}")
            except Exception as exc:  # any failure to reach Prefect: report, never fail
                failed.append(f"prefect at {api}: {type(exc).__name__}: {exc}")
    return PublishOutcome(head, tuple(published), tuple(failed))


def read_file_heads(path: Path) -> tuple[list[PublishedHead], list[str]]:
    """The heads in a witness file, and what could not be read (each line named)."""
    heads: list[PublishedHead] = []
    problems: list[str] = []
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return [], [f"witness file {path} does not exist"]
    except OSError as exc:
        return [], [f"witness file {path} cannot be read: {exc}"]
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            head = ChainHead.from_json(data)
        except (ValueError, InputError) as exc:
            problems.append(f"witness file {path} line {number} is not a chain head: {exc}")
            continue
        run = data.get("flow_run_id") if isinstance(data, dict) else None
        heads.append(PublishedHead(head, f"file {path} line {number}", run))
    return heads, problems


def _artifact_heads(artifact: Any) -> list[ChainHead]:
    data = artifact.data
    rows = json.loads(data) if isinstance(data, str) else data
    if isinstance(rows, dict):
        rows = [rows]
    return [ChainHead.from_json(r) for r in rows]


def read_prefect_heads() -> tuple[list[PublishedHead], list[str]]:
    """The heads published as Prefect artifacts; a Prefect that cannot be reached is a
    note, not an error."""
    api = _prefect_api()
    if api is None:
        return [], ["Prefect: PREFECT_API_URL is not set; no heads read from Prefect"]
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    heads: list[PublishedHead] = []
    problems: list[str] = []
    wanted = ArtifactFilter(key=ArtifactFilterKey(any_=[ARTIFACT_KEY]))
    try:
        with get_client(sync_client=True) as client:
            offset = 0
            while True:
                page = client.read_artifacts(
                    artifact_filter=wanted,
                    sort=ArtifactSort.CREATED_DESC,
                    limit=_PAGE,
                    offset=offset,
                )
                for artifact in page:
                    where = f"prefect artifact {artifact.id} at {api}"
                    run = None if artifact.flow_run_id is None else str(artifact.flow_run_id)
                    try:
                        found = _artifact_heads(artifact)
                    except (ValueError, TypeError, InputError) as exc:
                        problems.append(f"{where} is not a chain head: {exc}")
                        continue
                    heads.extend(PublishedHead(h, where, run) for h in found)
                if len(page) < _PAGE:
                    break
                offset += _PAGE
    except Exception as exc:  # unreachable or refusing: say so, check the other witnesses
        return heads, [f"Prefect at {api} could not be read ({type(exc).__name__}: {exc})"]
    return heads, problems


@dataclass(frozen=True, slots=True)
class WitnessReport:
    """The chain's own verdict, every published head judged, and what could not be read."""

    verdict: ChainVerdict
    checks: tuple[WitnessCheck, ...]
    notes: tuple[str, ...] = ()

    @property
    def problems(self) -> tuple[WitnessCheck, ...]:
        return tuple(c for c in self.checks if c.status is not WitnessStatus.OK)

    @property
    def ok(self) -> bool:
        return self.verdict.ok and not self.problems


def verify_witnesses(
    *,
    file: Path | None = None,
    prefect: bool = True,
    extra: Sequence[PublishedHead] = (),
    engine: Engine | None = None,
) -> WitnessReport:
    """Verify the chain, then judge it against every head the witnesses hold."""
    heads: list[PublishedHead] = list(extra)
    notes: list[str] = []
    path = _witness_file(file)
    if path is not None:
        found, problems = read_file_heads(path)
        heads.extend(found)
        notes.extend(problems)
    if prefect:
        found, problems = read_prefect_heads()
        heads.extend(found)
        notes.extend(problems)
    if path is None and not prefect:
        notes.append("no witness configured (FLEET_WITNESS_FILE or Prefect)")
    with reading(engine) as session:
        verdict = verify_chain(iter_events(session))
        length, _ = chain_head(session)
        hashes = hashes_at(session, (h.head.seq for h in heads if 0 < h.head.seq <= length))
    checks = check_witnesses(
        sorted(heads, key=lambda h: (h.head.at, h.head.seq)), length=length, hashes=hashes
    )
    return WitnessReport(verdict, checks, tuple(notes))
