"""The console's pages and forms. Every handler calls Fleet's services; nothing
here decides a rule. Reads need a signed-in principal of any role; each form
checks the role its action needs and its CSRF token before anything is done,
whatever the page showed."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from fleet.api.deps import engine_of, settings_of
from fleet.api.errors import status_of
from fleet.console import matrix, panels, security
from fleet.console.charts import SEVERITY_ORDER, exposure_chart
from fleet.console.forms import Form, read_form
from fleet.console.render import render, render_stream
from fleet.console.security import PREFIX, CsrfRefused, SignInRequired
from fleet.console.timeline import timeline
from fleet.core.durations import check_instant, format_duration, isoformat
from fleet.core.errors import FleetError, InputError, NotFoundError, PermissionDenied
from fleet.services import (
    approvals,
    audit,
    deployments,
    drift,
    exposure,
    manifests,
    overview,
    plans,
    rollbacks,
    runs,
    sessions,
)
from fleet.services import (
    security as security_service,
)
from fleet.services.sessions import Session
from fleet.services.tokens import Role

__all__ = ["router"]

router = APIRouter(prefix=PREFIX, include_in_schema=False)

PAGE_SIZES = (100, 250, 500, 1000)
T = TypeVar("T")


def _session(request: Request) -> Session:
    found = security.current_session(request)
    if found is None:
        raise SignInRequired()
    request.state.principal = found.principal
    return found


SessionDep = Annotated[Session, Depends(_session)]
InstanceName = Annotated[str, Path(max_length=200)]
RunId = Annotated[str, Path(max_length=64)]


def _text(value: str | None, limit: int = 200) -> str:
    """A query value as given, cut to `limit` (filters echo it back, escaped)."""
    return (value or "")[:limit]


def _time(value: str, what: str) -> datetime | None:
    """An ISO time from a form or a query (`datetime-local` gives no zone: UTC)."""
    value = value.strip()
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return check_instant(moment, what=what).astimezone(UTC)
    except InputError:
        raise
    except (ValueError, OverflowError):
        raise InputError(f"Invalid {what}: {value[:60]!r} (expected an ISO 8601 time)") from None


def _forbidden(session: Session, grant: Role) -> PermissionDenied:
    return PermissionDenied(
        f"Role {session.principal.role.value!r} of {session.principal.name!r} does not grant "
        f"{grant.value!r}"
    )


async def _posted(request: Request, grant: Role | None) -> tuple[Session, Form]:
    """The session and form of a POST: signed in, the right role, the right CSRF token."""
    form = await read_form(request)
    session = await run_in_threadpool(security.current_session, request)
    if session is None:
        raise SignInRequired()
    security.check_csrf(request, form, session.secret)
    if grant is not None and not session.principal.can(grant):
        raise _forbidden(session, grant)
    request.state.principal = session.principal
    return session, form


async def _call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await run_in_threadpool(lambda: fn(*args, **kwargs))


# -- sign-in ------------------------------------------------------------------


@router.get("", response_class=RedirectResponse)
def console_root() -> RedirectResponse:
    return RedirectResponse(PREFIX + "/", status_code=303)


@router.get("/sign-in", response_class=HTMLResponse)
def sign_in_form(
    request: Request, next: Annotated[str | None, Query(max_length=500)] = None
) -> Response:
    if security.current_session(request) is not None:
        return RedirectResponse(security.safe_next(next), status_code=303)
    return _sign_in_page(request, next=security.safe_next(next))


def _sign_in_page(request: Request, *, next: str, error: str = "", status: int = 200) -> Response:
    secret = security.new_sign_in_secret()
    response = render(
        request,
        "sign_in.html",
        session=None,
        status=status,
        sign_in_csrf=sessions.csrf_token(secret),
        next=next,
        error=error,
    )
    security.set_sign_in_cookie(response, request, secret)
    return response


@router.post("/sign-in", response_class=HTMLResponse)
async def sign_in(request: Request) -> Response:
    form = await read_form(request)
    security.check_csrf(request, form, request.cookies.get(security.SIGN_IN_COOKIE))
    hours = settings_of(request.app).console_session_hours
    started = await _call(
        sessions.start_session, form.get("token"), hours=hours, engine=engine_of(request)
    )
    target = security.safe_next(form.get("next"))
    if started is None:
        return _sign_in_page(
            request, next=target, error="That token is not valid (unknown or revoked).", status=401
        )
    response = RedirectResponse(target, status_code=303)
    security.set_session_cookie(response, request, started)
    response.delete_cookie(security.SIGN_IN_COOKIE, path=PREFIX)
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    session, _form = await _posted(request, None)
    await _call(sessions.end_session, session.secret, engine=engine_of(request))
    response = RedirectResponse(PREFIX + "/sign-in", status_code=303)
    security.clear_session_cookie(response, request)
    return response


# -- the fleet matrix ------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def fleet_matrix(
    request: Request,
    session: SessionDep,
    channel: Annotated[str | None, Query(max_length=200)] = None,
    customer: Annotated[str | None, Query(max_length=200)] = None,
    label: Annotated[str | None, Query(max_length=200)] = None,
    state: Annotated[str | None, Query(max_length=40)] = None,
    advisory: Annotated[str | None, Query(max_length=200)] = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    size: Annotated[int, Query(ge=1, le=1000)] = 1000,
) -> Response:
    engine = engine_of(request)
    facts = overview.overview(engine=engine)
    rows = matrix.rows_of(facts)
    filters = matrix.Filters(
        channel=_text(channel),
        customer=_text(customer),
        label=_text(label),
        state=_text(state),
        q=_text(q),
    )
    chosen = matrix.filter_rows(rows, filters)
    if advisory:
        chosen = [r for r in chosen if any(b.advisory == advisory for b in r.badges)]
    size = min(PAGE_SIZES, key=lambda s: (s < size, abs(s - size)))
    pages = max(1, math.ceil(len(chosen) / size))
    page = min(page, pages)
    shown = chosen[(page - 1) * size : page * size]
    return render_stream(
        request,
        "matrix.html",
        session=session,
        nav="matrix",
        components=facts.state.components,
        rows=shown,
        total=len(rows),
        matched=len(chosen),
        counts=matrix.state_counts(chosen),
        words=matrix.STATE_WORDS,
        states=list(matrix.CellState),
        choices=matrix.choices(rows),
        filters=filters,
        advisory=_text(advisory),
        page=page,
        pages=pages,
        size=size,
        sizes=PAGE_SIZES,
        notes=facts.notes,
        at=facts.planned_at,
        now=facts.at,
    )


# -- an instance -------------------------------------------------------------------


def _instance_context(request: Request, name: str) -> dict[str, Any]:
    engine = engine_of(request)
    state = plans.current_state(engine=engine)
    inst = next((i for i in state.instances if i.name == name), None)
    if inst is None:
        raise NotFoundError(f"Unknown instance: {name!r}")
    now = datetime.now(UTC)
    plan = plans.preview(now=now, instances=[name], engine=engine).instances[0]
    history = manifests.history(name, engine=engine)
    records = deployments.deployments_of(name, engine=engine)
    given = deployments.approvals_for(name, engine=engine)
    refused, _more = audit.search(
        subject=f"instance:{name}", action="approval.refused", limit=50, engine=engine
    )
    affecting = {
        r.advisory for r in security_service.compliance_report(instances=[name], engine=engine)
    }
    advisories = [a for a in state.advisories if a.id in affecting]
    found = drift.drifted(engine=engine).get(name)
    try:
        waiting = runs.waiting_instances(engine=engine).get(name)
    except FleetError:
        waiting = None
    ran = [h for h in history if h.revision.ran]
    return {
        "inst": inst,
        "plan": plan,
        "badges": [matrix.Badge(**_badge_fields(f)) for f in plan.advisories if f.running],
        "history": history,
        "ran": ran,
        "entries": timeline(
            history=history,
            deployments=records,
            approvals=given,
            refusals=refused,
            advisories=advisories,
            drift=found,
        ),
        "drift": found,
        "waiting": waiting,
        "panels": panels.instance_panels(name, engine),
        "now": now,
    }


def _badge_fields(flag: Any) -> dict[str, Any]:
    ra = flag.risk_acceptance
    return {
        "advisory": flag.advisory.id,
        "component": flag.advisory.component,
        "severity": str(flag.advisory.severity),
        "deadline": flag.deadline,
        "enforced": flag.enforced,
        "accepted": None if ra is None else isoformat(ra.until)[:10],
        "status": "no fix available" if flag.no_fix else None,
    }


@router.get("/instances/{name}", response_class=HTMLResponse)
def instance_page(
    request: Request,
    session: SessionDep,
    name: InstanceName,
    target: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    context = _instance_context(request, name)
    preview = _preview(request, name, target) if target else None
    return render(
        request,
        "instance.html",
        session=session,
        nav="matrix",
        name=name,
        target=_text(target, 64),
        preview=preview,
        **context,
    )


def _preview(request: Request, name: str, target: str) -> dict[str, Any]:
    """The rollback a target names and its security floor, or why there is none."""
    try:
        found = security_service.rollback_preview(name, target, engine=engine_of(request))
    except FleetError as exc:
        return {"error": str(exc), "target": target}
    history = {h.revision.number: h for h in manifests.history(name, engine=engine_of(request))}
    chosen = history.get(found.revision)
    return {
        "error": "",
        "target": target,
        "revision": found.revision,
        "versions": {} if chosen is None else chosen.revision.manifest.to_json(),
        "blocking": found.blocking,
        "policy": found.policy,
        "approvals_required": found.approvals_required,
    }


@router.get("/instances/{name}/rollback", response_class=HTMLResponse)
def rollback_preview(
    request: Request,
    session: SessionDep,
    name: InstanceName,
    target: Annotated[str, Query(max_length=64)] = "previous",
    at: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """The rollback form's preview: which revision, and the security floor."""
    if target == "time":
        moment = _time(at or "", "rollback time")
        if moment is None:
            raise InputError("Invalid rollback time: '' (give the moment to go back to)")
        target = isoformat(moment)
    return RedirectResponse(
        f"{PREFIX}/instances/{name}?target={_quote(target)}#rollback", status_code=303
    )


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


@router.post("/instances/{name}/rollback")
async def start_rollback(request: Request, name: InstanceName) -> Response:
    session, form = await _posted(request, Role.OPERATOR)
    target = form.get("target", "previous")
    seen = form.get("revision")
    engine = engine_of(request)
    found = await _call(security_service.rollback_preview, name, target, engine=engine)
    if seen != str(found.revision):
        raise InputError(
            f"The rollback target {target!r} now names r{found.revision}, not r{seen}: "
            "preview it again before starting"
        )
    risk_reason = form.get("risk_reason").strip() or None
    risk_until = _time(form.get("risk_until"), "risk acceptance end")
    run = await _call(
        rollbacks.start_rollback,
        [name],
        target=target,
        reason=form.get("reason"),
        principal=session.principal,
        risk_reason=risk_reason,
        risk_until=risk_until,
        engine=engine,
    )
    return render(
        request,
        "started.html",
        session=session,
        nav="matrix",
        name=name,
        run=run,
        revision=found.revision,
    )


# -- approvals ---------------------------------------------------------------------


@router.get("/approvals", response_class=HTMLResponse)
def approvals_page(
    request: Request,
    session: SessionDep,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    size = 20
    items, total = runs.waiting_runs(
        limit=size, offset=(page - 1) * size, engine=engine_of(request)
    )
    return render(
        request,
        "approvals.html",
        session=session,
        nav="approvals",
        items=items,
        total=total,
        page=page,
        pages=max(1, math.ceil(total / size)),
        single=None,
    )


@router.get("/approvals/{run_id}", response_class=HTMLResponse)
def approval_page(
    request: Request,
    session: SessionDep,
    run_id: RunId,
    decided: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    engine = engine_of(request)
    run = runs.read_run(run_id, runs.APPROVAL_FLOWS)
    items, _total = runs.waiting_runs(limit=200, offset=0, engine=engine)
    waiting = next((i for i in items if i["flow_run_id"] == run["flow_run_id"]), None)
    return render(
        request,
        "approvals.html",
        session=session,
        nav="approvals",
        items=[waiting] if waiting is not None else [],
        total=1 if waiting is not None else 0,
        page=1,
        pages=1,
        single=run,
        given=approvals.given(run["flow_run_id"], engine=engine),
        decided=_text(decided, 20),
    )


@router.post("/approvals/{run_id}")
async def decide(request: Request, run_id: RunId) -> Response:
    """Approve or reject as the signed-in principal: the REST API's own service
    (verified, four eyes), which then resumes the run."""
    session, form = await _posted(request, Role.APPROVER)
    decision = form.get("decision")
    await _call(
        runs.decide,
        run_id,
        approver=session.principal.name,
        decision=decision,
        comment=form.get("comment"),
        instances=[n for n in form.all("instances") if n],
        engine=engine_of(request),
    )
    return RedirectResponse(
        f"{PREFIX}/approvals/{_quote(run_id)}?decided={_quote(decision)}", status_code=303
    )


# -- security ---------------------------------------------------------------------


@router.get("/security", response_class=HTMLResponse)
def security_page(
    request: Request,
    session: SessionDep,
    days: Annotated[int, Query(ge=7, le=365)] = 30,
) -> Response:
    engine = engine_of(request)
    now = datetime.now(UTC)
    state = plans.current_state(engine=engine)
    rows = security_service.compliance_report(now=now, engine=engine)
    plan = {i.instance: i for i in plans.preview(now=now, engine=engine).instances}
    by_id: dict[str, list[Any]] = {}
    for row in rows:
        by_id.setdefault(row.advisory, []).append(row)
    groups = []
    for severity in SEVERITY_ORDER:
        found = []
        for adv in state.advisories:
            if adv.severity is not severity or adv.id not in by_id:
                continue
            affected = [r for r in by_id[adv.id] if r.component == adv.component]
            if not affected:
                continue
            fixes: dict[str, str] = {}
            for r in affected:
                item = plan.get(r.instance)
                if item is None:
                    continue
                to = next(
                    (str(c.to_version) for c in item.components if c.component == r.component),
                    None,
                )
                if to is not None and to != str(r.version):
                    fixes[r.instance] = f"{to} ({item.decision})"
            found.append({"advisory": adv, "rows": affected, "fixes": fixes})
        groups.append({"severity": severity.value, "advisories": found})
    series = exposure.daily_exposure(days=days, now=now, engine=engine)
    return render(
        request,
        "security.html",
        session=session,
        nav="security",
        groups=groups,
        open_count=len(by_id),
        chart=exposure_chart(series),
        series=series,
        severities=[s.value for s in SEVERITY_ORDER],
        days=days,
        now=now,
        time_left=matrix.time_left,
        duration=format_duration,
        deadlines=state.deadlines,
    )


# -- audit --------------------------------------------------------------------------


def _audit_filters(
    subject: str | None,
    action: str | None,
    actor: str | None,
    since: str | None,
    until: str | None,
    run: str | None,
) -> dict[str, Any]:
    return {
        "subject": _text(subject, 300) or None,
        "action": _text(action, 100) or None,
        "actor": _text(actor, 200) or None,
        "since": _time(since or "", "since"),
        "until": _time(until or "", "until"),
        "flow_run_id": _text(run, 64) or None,
    }


Filter = Annotated[str | None, Query(max_length=300)]


@router.get("/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    session: SessionDep,
    subject: Filter = None,
    action: Filter = None,
    actor: Filter = None,
    since: Filter = None,
    until: Filter = None,
    run: Filter = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    size = 100
    given = _audit_filters(subject, action, actor, since, until, run)
    found, more = audit.search(
        **given, limit=size, offset=(page - 1) * size, engine=engine_of(request)
    )
    echo = {
        "subject": _text(subject, 300),
        "action": _text(action, 100),
        "actor": _text(actor, 200),
        "since": _text(since, 64),
        "until": _text(until, 64),
        "run": _text(run, 64),
    }
    return render(
        request,
        "audit.html",
        session=session,
        nav="audit",
        events=[(e, json.dumps(e.details, ensure_ascii=False, sort_keys=True)) for e in found],
        more=more,
        page=page,
        echo=echo,
    )


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(
    request: Request,
    session: SessionDep,
    run_id: RunId,
    instance: Annotated[str | None, Query(max_length=200)] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    """What one run did, instance by instance: one instance's deploy in a run of
    thousands is the `instance` filter, with its outcome, error, approvals and
    the audit events of that run on it."""
    size = 250
    name = _text(instance, 200).strip() or None
    records = deployments.deployments_of_run(run_id, instance=name, engine=engine_of(request))
    counts: dict[str, int] = {}
    for record in records:
        counts[record.outcome] = counts.get(record.outcome, 0) + 1
    shown = records[(page - 1) * size : page * size]
    return render(
        request,
        "run.html",
        session=session,
        nav="audit",
        run_id=run_id,
        instance=name or "",
        records=shown,
        counts=sorted(counts.items()),
        total=len(records),
        page=page,
        more=len(records) > page * size,
    )


@router.get("/audit/verify", response_class=HTMLResponse)
def audit_verify(request: Request, session: SessionDep) -> Response:
    verdict = audit.verify(engine=engine_of(request))
    return render(request, "verify.html", session=session, verdict=verdict)


@router.get("/audit/export")
def audit_export(
    request: Request,
    session: SessionDep,
    subject: Filter = None,
    action: Filter = None,
    actor: Filter = None,
    since: Filter = None,
    until: Filter = None,
    run: Filter = None,
) -> Response:
    """The events as JSON lines in chain order: all of them (verifiable), or those the
    filters keep."""
    given = _audit_filters(subject, action, actor, since, until, run)
    engine = engine_of(request)

    def lines() -> Iterator[str]:
        subject_filter = given["subject"]
        for event in audit.events(subject=subject_filter, since=given["since"], engine=engine):
            if not _keeps(event, given):
                continue
            yield json.dumps(audit.event_json(event), ensure_ascii=False, sort_keys=True) + "\n"

    filtered = any(v is not None for v in given.values())
    name = "fleet-audit-filtered.jsonl" if filtered else "fleet-audit.jsonl"
    return StreamingResponse(
        lines(),
        media_type="application/jsonl",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _keeps(event: Any, given: dict[str, Any]) -> bool:
    action = given["action"]
    if action is not None and not (
        event.action.startswith(action[:-1]) if action.endswith("*") else event.action == action
    ):
        return False
    if given["actor"] is not None and event.actor != given["actor"]:
        return False
    if given["until"] is not None and event.at >= given["until"]:
        return False
    return given["flow_run_id"] is None or event.flow_run_id == given["flow_run_id"]


# -- errors ---------------------------------------------------------------------------


def error_page(request: Request, status: int, message: str) -> Response:
    session = None
    principal = getattr(request.state, "principal", None)
    if principal is not None:
        secret = request.cookies.get(security.COOKIE, "")
        session = Session(principal, datetime.now(UTC) + timedelta(minutes=1), secret)
    return render(
        request, "error.html", session=session, status=status, status_code=status, message=message
    )


async def console_error(request: Request, exc: Exception) -> Response:
    """Errors of console pages as pages (the REST API keeps problem+json)."""
    if isinstance(exc, SignInRequired):
        if request.method == "GET":
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(
                f"{PREFIX}/sign-in?next={_quote(security.safe_next(target))}", status_code=303
            )
        return error_page(request, 401, "Sign in first: your session has ended.")
    if isinstance(exc, CsrfRefused):
        return error_page(request, 403, str(exc))
    if isinstance(exc, FleetError):
        return error_page(request, status_of(exc), str(exc))
    return error_page(request, 500, "Something went wrong.")
