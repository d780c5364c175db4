"""The agent's HTTP API (FastAPI): a thin shell over `Installation` or `AgentHost`.

An agent serves one installation (`/v1/apply`, `/v1/state`, `/v1/health`,
`/v1/rollback`, `/v1/applies`) or, started with `--multi-instance`, many
instances under one root, each with the same routes under
`/v1/instances/{name}/` (plus `GET /v1/instances` and `PUT
/v1/instances/{name}`). The routes of the other kind answer 404 saying which
kind this agent is. `/v1/faults` is the agent's, whatever it serves.

Every route needs `Authorization: Bearer <token>`; the token is compared in
constant time and never logged or echoed. Errors are one JSON shape,
`{"error": code, "detail": message}`, with the status of the error class.
"""

from __future__ import annotations

import hmac
import logging
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.convertors import PathConvertor, register_url_convertor

from fleet.agent.errors import InstanceNotFound, ManifestRejected, TargetError, Unauthorized
from fleet.agent.faults import FaultMiddleware, Faults
from fleet.agent.host import AgentHost
from fleet.agent.installation import Installation
from fleet.agent.models import (
    ApplyLogEntry,
    ApplyResult,
    ComponentHealth,
    HealthReport,
    InstanceCreated,
    InstanceList,
    TargetState,
    describe_validation_error,
    parse_manifest,
)

__all__ = ["AgentState", "RollbackRequest", "create_app"]

log = logging.getLogger("fleet.agent")


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    manifest_hash: str | None = None


class AgentState:
    """What the routes share: what is served (one installation or a host), the token and
    the faults."""

    def __init__(
        self, served: Installation | AgentHost, token: str, faults: Faults | None = None
    ) -> None:
        if not token:
            raise ValueError("The agent token must not be empty")
        self.served = served
        self._token = token.encode()
        self.faults = faults or Faults()

    def installation(self) -> Installation:
        """The single installation; `InstanceNotFound` on a many-instance host."""
        if isinstance(self.served, AgentHost):
            raise InstanceNotFound(
                "This agent hosts many instances: use /v1/instances/{name}/... "
                "(a FleetAgent block names its instance in its `instance` field)"
            )
        return self.served

    def host(self) -> AgentHost:
        """The many-instance host; `InstanceNotFound` on a single-instance agent."""
        if not isinstance(self.served, AgentHost):
            raise InstanceNotFound(
                "This agent serves one installation, not many instances: use /v1/apply, "
                "/v1/state, ... (a FleetAgent block for it has no `instance`)"
            )
        return self.served

    def check_token(self, header: str | None) -> None:
        scheme, _, given = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), self._token):
            raise Unauthorized("Missing or invalid bearer token")


def _agent_state(request: Request) -> AgentState:
    state: AgentState = request.app.state.agent
    return state


Agent = Annotated[AgentState, Depends(_agent_state)]


class _AuthMiddleware:
    """Refuse every request without the bearer token, before its body is read."""

    def __init__(self, app: Any, state: AgentState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
            try:
                self.state.check_token(header)
            except Unauthorized as exc:
                log.warning("%s %r -> 401", scope["method"], scope["path"])
                response = JSONResponse(
                    {"error": exc.code, "detail": str(exc)},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class _AnyText(PathConvertor):
    """Like `:path`, and line breaks too (`.` stops at them)."""

    regex = r"[\s\S]*"


register_url_convertor("instance", _AnyText())


def create_app(state: AgentState) -> FastAPI:
    app = FastAPI(
        title="Fleet agent",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    # Added last runs first: the token is checked before anything else, faults after it.
    app.add_middleware(FaultMiddleware, holder=state)
    app.add_middleware(_AuthMiddleware, state=state)

    app.state.agent = state

    @app.exception_handler(TargetError)
    async def target_error(request: Request, exc: TargetError) -> JSONResponse:
        # %r: a path is the client's text, and may hold line breaks.
        log.warning("%s %r -> %s: %s", request.method, request.url.path, exc.code, exc)
        return JSONResponse({"error": exc.code, "detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            parts.append(f"{where}: {err['msg']}")
        return JSONResponse(
            {"error": ManifestRejected.code, "detail": "Invalid request: " + "; ".join(parts)},
            status_code=422,
        )

    @app.post("/v1/apply", response_model=ApplyResult)
    def apply(agent: Agent, body: dict[str, Any]) -> ApplyResult:
        """Install a manifest and switch to it (no-op when already current)."""
        installation = agent.installation()
        return installation.apply(parse_manifest(body))

    @app.get("/v1/state", response_model=TargetState)
    def read_state(agent: Agent) -> TargetState:
        """The current release: manifest hash, revision, component versions."""
        return agent.installation().state()

    @app.get("/v1/health", response_model=HealthReport)
    def health(agent: Agent) -> HealthReport:
        """Run each component's health check on the current release."""
        return _health(agent, agent.installation())

    @app.post("/v1/rollback", response_model=ApplyResult)
    def rollback(agent: Agent, body: RollbackRequest) -> ApplyResult:
        """Switch back to a release still on disk (default: the previous revision)."""
        return agent.installation().rollback(body.manifest_hash)

    @app.get("/v1/applies", response_model=list[ApplyLogEntry])
    def applies(agent: Agent) -> list[ApplyLogEntry]:
        """The apply log, oldest first: start and end of every apply and rollback."""
        return agent.installation().apply_log()

    # A name is matched as `:instance`, any text, so that one holding "/" or a line break
    # reaches the name check and gets its 422, instead of matching no route at all.
    @app.get("/v1/instances", response_model=InstanceList)
    def list_instances(agent: Agent) -> InstanceList:
        """The instances this host serves, sorted."""
        return InstanceList(instances=agent.host().names())

    @app.post("/v1/instances/{name:instance}/apply", response_model=ApplyResult)
    def apply_instance(agent: Agent, name: str, body: dict[str, Any]) -> ApplyResult:
        """Install a manifest on one instance of the host and switch to it."""
        host = agent.host()
        host.get(name)  # an unknown instance says more than a problem in the manifest
        return host.apply(name, parse_manifest(body))

    @app.get("/v1/instances/{name:instance}/state", response_model=TargetState)
    def read_instance_state(agent: Agent, name: str) -> TargetState:
        """One instance's current release."""
        return agent.host().get(name).state()

    @app.get("/v1/instances/{name:instance}/health", response_model=HealthReport)
    def instance_health(agent: Agent, name: str) -> HealthReport:
        """Run each component's health check on one instance's current release."""
        return _health(agent, agent.host().get(name))

    @app.post("/v1/instances/{name:instance}/rollback", response_model=ApplyResult)
    def rollback_instance(agent: Agent, name: str, body: RollbackRequest) -> ApplyResult:
        """Switch one instance back to a release still on disk."""
        return agent.host().get(name).rollback(body.manifest_hash)

    @app.get("/v1/instances/{name:instance}/applies", response_model=list[ApplyLogEntry])
    def instance_applies(agent: Agent, name: str) -> list[ApplyLogEntry]:
        """One instance's apply log, oldest first."""
        return agent.host().get(name).apply_log()

    @app.put("/v1/instances/{name:instance}", response_model=InstanceCreated)
    def create_instance(agent: Agent, name: str, response: Response) -> InstanceCreated:
        """Serve instance `name` from now on (201), or say it already is (200)."""
        created = agent.host().create(name)
        if created:
            log.info("instance %s created", name)
        response.status_code = 201 if created else 200
        return InstanceCreated(instance=name, created=created)

    @app.get("/v1/faults", response_model=Faults)
    def read_faults(agent: Agent) -> Faults:
        """The faults injected now."""
        return agent.faults

    @app.put("/v1/faults", response_model=Faults)
    def set_faults(agent: Agent, body: dict[str, Any]) -> Faults:
        """Replace the injected faults (test use)."""
        try:
            agent.faults = Faults.model_validate(body)
        except ValidationError as exc:
            raise ManifestRejected(f"Invalid faults: {describe_validation_error(exc)}") from None
        return agent.faults

    return app


def _health(agent: AgentState, installation: Installation) -> HealthReport:
    report = installation.health()
    if not agent.faults.unhealthy:
        return report
    failed = {
        name: ComponentHealth(healthy=False, checked=True, detail="injected fault: unhealthy")
        for name in report.components
    }
    return HealthReport(
        healthy=False,
        manifest_hash=report.manifest_hash,
        components=failed,
        detail="injected fault: unhealthy",
    )
