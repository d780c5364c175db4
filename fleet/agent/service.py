"""The agent's HTTP API (FastAPI): a thin shell over `Installation`.

Every route needs `Authorization: Bearer <token>`; the token is compared in
constant time and never logged or echoed. Errors are one JSON shape,
`{"error": code, "detail": message}`, with the status of the error class.
"""

from __future__ import annotations

import hmac
import logging
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, ValidationError

from fleet.agent.errors import ManifestRejected, TargetError, Unauthorized
from fleet.agent.faults import FaultMiddleware, Faults
from fleet.agent.installation import Installation
from fleet.agent.models import (
    ApplyLogEntry,
    ApplyResult,
    ComponentHealth,
    HealthReport,
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
    """What the routes share: the installation, the token and the faults."""

    def __init__(self, installation: Installation, token: str, faults: Faults | None = None):
        if not token:
            raise ValueError("The agent token must not be empty")
        self.installation = installation
        self._token = token.encode()
        self.faults = faults or Faults()

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
                log.warning("%s %s -> 401", scope["method"], scope["path"])
                response = JSONResponse(
                    {"error": exc.code, "detail": str(exc)},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


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
        log.warning("%s %s -> %s: %s", request.method, request.url.path, exc.code, exc)
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
        manifest = parse_manifest(body)
        return agent.installation.apply(manifest)

    @app.get("/v1/state", response_model=TargetState)
    def read_state(agent: Agent) -> TargetState:
        """The current release: manifest hash, revision, component versions."""
        return agent.installation.state()

    @app.get("/v1/health", response_model=HealthReport)
    def health(agent: Agent) -> HealthReport:
        """Run each component's health check on the current release."""
        report = agent.installation.health()
        if agent.faults.unhealthy:
            failed = {
                name: ComponentHealth(
                    healthy=False, checked=True, detail="injected fault: unhealthy"
                )
                for name in report.components
            }
            return HealthReport(
                healthy=False,
                manifest_hash=report.manifest_hash,
                components=failed,
                detail="injected fault: unhealthy",
            )
        return report

    @app.post("/v1/rollback", response_model=ApplyResult)
    def rollback(agent: Agent, body: RollbackRequest) -> ApplyResult:
        """Switch back to a release still on disk (default: the previous revision)."""
        return agent.installation.rollback(body.manifest_hash)

    @app.get("/v1/applies", response_model=list[ApplyLogEntry])
    def applies(agent: Agent) -> list[ApplyLogEntry]:
        """The apply log, oldest first: start and end of every apply and rollback."""
        return agent.installation.apply_log()

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
