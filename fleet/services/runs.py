"""Fleet's Prefect runs as the API sees them: start, list with live state, and
decide the ones waiting for approval with a verified approver.

Runs are started through their Prefect deployments (`<flow-name>/fleet`)
without waiting. A run waits for approval when it is Paused; what it waits
for is in Fleet's records: the approval requests it recorded when it opened
its approval gate (`fleet.services.approvals`), whichever run compiled the
revisions, less what is decided (approved, rejected, expired or deployed).

A verified decision is first recorded as Fleet's approval (`verified`, bound
to the revision and hash the run waits for), then the run is resumed: it
counts the decisions in Fleet's records, so the run input only wakes it.
The requester of a run can never approve it (`fleet.core.approvals`): the
refusal is recorded in the audit chain and raised as `PermissionDenied`.
Approving twice is harmless: the run counts distinct people, so n approvals
need n principals.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import Engine, select

from fleet.core.approvals import refusal
from fleet.core.errors import ConflictError, FleetError, InputError, NotFoundError, PermissionDenied
from fleet.core.identity import check_identity
from fleet.core.text import check_text
from fleet.db.history import MANIFEST
from fleet.services import approvals, deployments
from fleet.services._common import reading

__all__ = [
    "APPROVAL_FLOWS",
    "COMPILE_AND_DEPLOY",
    "ROLLBACK",
    "RunsUnavailable",
    "decide",
    "list_runs",
    "read_run",
    "start_run",
    "waiting_instances",
    "waiting_runs",
]

COMPILE_AND_DEPLOY = "compile-and-deploy"
ROLLBACK = "rollback"
PATCH_ROLLOUT = "patch-rollout"
APPROVAL_FLOWS = (COMPILE_AND_DEPLOY, ROLLBACK, PATCH_ROLLOUT)
DEPLOYMENT_NAME = "fleet"


class RunsUnavailable(FleetError):
    """Prefect's server could not be reached or refused the request."""


def _parse_id(flow_run_id: str) -> UUID:
    try:
        return UUID(flow_run_id)
    except ValueError:
        raise InputError(f"Invalid flow run id: {flow_run_id!r}") from None


def _client() -> Any:
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def _run_json(run: Any, flow_name: str, deployment: str | None = None) -> dict[str, Any]:
    state = run.state
    parameters = dict(run.parameters or {})
    requested_by = parameters.get("requested_by")
    return {
        "flow_run_id": str(run.id),
        "flow": flow_name,
        "name": run.name,
        "deployment": deployment,
        "requested_by": requested_by if isinstance(requested_by, str) else None,
        "state": None if state is None else state.name,
        "state_type": None if state is None else state.type.value,
        "created": run.created,
        "start_time": run.start_time,
        "end_time": run.end_time,
        "parameters": parameters,
    }


def start_run(flow_name: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Start a run of `<flow_name>/fleet` and return at once (it is only scheduled)."""
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    name = f"{flow_name}/{DEPLOYMENT_NAME}"
    try:
        run = run_deployment(name, parameters=dict(parameters), timeout=0)
    except ObjectNotFound:
        raise NotFoundError(
            f"Prefect deployment {name!r} not found (deploy Fleet's flows first)"
        ) from None
    except Exception as exc:
        raise RunsUnavailable(f"Could not start {name!r}: {exc}") from exc
    return _run_json(run, flow_name, name)


def _flow_filter(flows: Sequence[str]) -> Any:
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    return FlowFilter(name=FlowFilterName(any_=list(flows)))


def _flow_names(client: Any, runs: Sequence[Any]) -> dict[Any, str]:
    from prefect.client.schemas.filters import FlowFilter, FlowFilterId

    ids = list({r.flow_id for r in runs})
    if not ids:
        return {}
    flows = client.read_flows(flow_filter=FlowFilter(id=FlowFilterId(any_=ids)))
    return {f.id: f.name for f in flows}


def list_runs(
    flows: Sequence[str], *, limit: int, offset: int, paused_only: bool = False
) -> tuple[list[dict[str, Any]], int]:
    """Runs of these flows, newest first, with their live state; and how many there are."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    run_filter = None
    if paused_only:
        run_filter = FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
        )
    try:
        with _client() as client:
            runs = client.read_flow_runs(
                flow_filter=_flow_filter(flows),
                flow_run_filter=run_filter,
                sort=FlowRunSort.EXPECTED_START_TIME_DESC,
                limit=limit,
                offset=offset,
            )
            total = client.count_flow_runs(
                flow_filter=_flow_filter(flows), flow_run_filter=run_filter
            )
            names = _flow_names(client, runs)
    except FleetError:
        raise
    except Exception as exc:
        raise RunsUnavailable(f"Could not read flow runs: {exc}") from exc
    return [_run_json(r, names.get(r.flow_id, "")) for r in runs], int(total)


def _read(client: Any, run_id: UUID, flows: Sequence[str]) -> tuple[Any, str]:
    from prefect.exceptions import ObjectNotFound

    try:
        run = client.read_flow_run(run_id)
    except ObjectNotFound:
        raise NotFoundError(f"Unknown flow run: {str(run_id)!r}") from None
    flow_name = _flow_names(client, [run]).get(run.flow_id, "")
    if flow_name not in flows:
        raise NotFoundError(f"Unknown flow run: {str(run_id)!r} (not a run of {', '.join(flows)})")
    return run, flow_name


def read_run(flow_run_id: str, flows: Sequence[str]) -> dict[str, Any]:
    run_id = _parse_id(flow_run_id)
    try:
        with _client() as client:
            run, flow_name = _read(client, run_id, flows)
    except FleetError:
        raise
    except Exception as exc:
        raise RunsUnavailable(f"Could not read flow run {flow_run_id!r}: {exc}") from exc
    return _run_json(run, flow_name)


def _waiting(flow_run_id: str, engine: Engine | None) -> dict[str, Any]:
    """Instance -> revision row, for the instances the run still waits on."""
    open_now = approvals.still_open(flow_run_id, engine=engine)
    if not open_now:
        return {}
    with reading(engine) as session:
        rows = session.execute(
            select(MANIFEST)
            .where(MANIFEST.c.instance.in_(sorted(open_now)))
            .order_by(MANIFEST.c.instance)
        ).all()
    return {r.instance: r for r in rows if r.number == open_now[r.instance].revision}


def _plan_json(row: Any) -> dict[str, Any]:
    base = dict(row.base or {})
    after = dict(row.components or {})
    return {
        "instance": row.instance,
        "revision": row.number,
        "hash": row.hash,
        "decision": row.decision,
        "status": row.status,
        "changes": {
            c: {"from": base.get(c), "to": after.get(c)}
            for c in sorted(set(base) | set(after))
            if base.get(c) != after.get(c)
        },
        "explanation": dict(row.explanation or {}),
        "warnings": list(row.warnings or ()),
    }


def _description(client: Any, run: Any) -> tuple[str | None, str | None]:
    from prefect.input.run_input import keyset_from_paused_state

    state = run.state
    key = state.state_details.pause_key if state is not None else None
    if state is None or state.state_details.run_input_keyset is None:
        return key, None
    try:
        text = client.read_flow_run_input(run.id, keyset_from_paused_state(state)["description"])
    except Exception:  # an input without a description
        return key, None
    return key, str(text) if text is not None else None


def waiting_runs(
    *, limit: int, offset: int, engine: Engine | None = None
) -> tuple[list[dict[str, Any]], int]:
    """Paused runs of Fleet's flows, each with its plan, description and approvals so far."""
    runs, total = list_runs(APPROVAL_FLOWS, limit=limit, offset=offset, paused_only=True)
    out = []
    try:
        with _client() as client:
            for item in runs:
                run = client.read_flow_run(UUID(item["flow_run_id"]))
                key, description = _description(client, run)
                out.append(
                    {
                        **item,
                        "pause_key": key,
                        "description": description,
                        "plan": [
                            _plan_json(r) for r in _waiting(item["flow_run_id"], engine).values()
                        ],
                        "approvals": [
                            a.to_json() for a in approvals.given(item["flow_run_id"], engine=engine)
                        ],
                    }
                )
    except FleetError:
        raise
    except Exception as exc:
        raise RunsUnavailable(f"Could not read paused runs: {exc}") from exc
    return out, total


def waiting_instances(
    *, engine: Engine | None = None, limit: int = 200
) -> dict[str, tuple[str, int]]:
    """Instance -> (flow run id, revision number) for every instance a paused run
    of Fleet's flows waits to have approved (the newest `limit` paused runs)."""
    paused, _ = list_runs(APPROVAL_FLOWS, limit=limit, offset=0, paused_only=True)
    out: dict[str, tuple[str, int]] = {}
    for item in reversed(paused):  # the newest run wins
        for name, row in _waiting(item["flow_run_id"], engine).items():
            out[name] = (item["flow_run_id"], row.number)
    return out


def _until_paused(client: Any, run_id: UUID, flows: Sequence[str], wait: float) -> tuple[Any, str]:
    """The run (and its flow's name) once it is paused; a run between two pauses gets
    `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        run, flow_name = _read(client, run_id, flows)
        if run.state is not None and run.state.is_paused():
            return run, flow_name
        if run.state is not None and run.state.is_final():
            raise ConflictError(f"Flow run {str(run_id)!r} is {run.state.name}: nothing to decide")
        if time.monotonic() >= deadline:
            state = "unknown" if run.state is None else run.state.name
            raise ConflictError(
                f"Flow run {str(run_id)!r} is not waiting for approval (state {state})"
            )
        time.sleep(0.2)


def decide(
    flow_run_id: str,
    *,
    approver: str,
    decision: str,
    comment: str = "",
    instances: Sequence[str] = (),
    wait: float = 5.0,
    now: datetime | None = None,
    engine: Engine | None = None,
) -> list[deployments.Approval]:
    """Record `approver`'s verified decision on a waiting run, then resume it.

    Every check comes before the first write: the run waits, the instances
    are ones it waits for, and an approver is not the requester.
    """
    from prefect.client.schemas.responses import SetStateStatus

    run_id = _parse_id(flow_run_id)
    if decision not in ("approve", "reject"):
        raise InputError(f"Invalid decision: {decision!r} (approve or reject)")
    check_text(comment, what="approval comment", required=False)
    approver = check_identity(approver, kind="approver")
    try:
        with _client() as client:
            _until_paused(client, run_id, APPROVAL_FLOWS, wait)
            waiting = _waiting(flow_run_id, engine)
            chosen = list(dict.fromkeys(instances)) or sorted(waiting)
            unknown = [n for n in chosen if n not in waiting]
            if unknown:
                raise InputError(
                    f"Not waiting for approval in run {flow_run_id}: "
                    f"{', '.join(map(repr, unknown))}"
                    f" (waiting: {', '.join(sorted(waiting)) or 'none'})"
                )
            if not chosen:
                raise ConflictError(f"Flow run {flow_run_id!r} waits for no instance")
            opened = approvals.requests_of(flow_run_id, engine=engine)
            assert opened is not None  # it waits for something
            why = refusal(approver, requested_by=opened.requested_by, approve=decision == "approve")
            if why is not None:
                approvals.record_refusal(
                    chosen,
                    approver=approver,
                    reason=why,
                    key=f"api-{uuid4()}",
                    flow_run_id=flow_run_id,
                    details={"via": "api"},
                    engine=engine,
                )
                raise PermissionDenied(why)
            recorded = [
                approvals.record(
                    name,
                    approver=approver,
                    decision=decision,
                    comment=comment,
                    verified=True,
                    flow_run_id=flow_run_id,
                    manifest_number=waiting[name].number,
                    manifest_hash=waiting[name].hash,
                    via="api",
                    now=now,
                    engine=engine,
                )
                for name in chosen
            ]
            response = client.resume_flow_run(
                run_id,
                # Only a wake-up: the run counts the verified records made above.
                run_input={
                    "decision": decision,
                    "approver": approver,
                    "comment": comment,
                    "instances": chosen,
                    "code": "",
                },
            )
            if response.status == SetStateStatus.REJECT:
                reason = getattr(response.details, "reason", None) or "rejected by Prefect"
                raise ConflictError(
                    f"Flow run {flow_run_id!r} could not be resumed ({reason}); the decision "
                    "is recorded: send it again once the run waits"
                )
    except FleetError:
        raise
    except Exception as exc:
        raise RunsUnavailable(f"Could not decide flow run {flow_run_id!r}: {exc}") from exc
    return recorded
