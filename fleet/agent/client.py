"""Client of the agent API, mapping every failure to a transient or permanent error.

An `AgentClient` speaks to a single-instance agent (`/v1/apply`, ...) or, given
`instance`, to that instance of a many-instance host (`/v1/instances/{name}/apply`,
...). Either way it is one instance's `Target`.
"""

from __future__ import annotations

import ssl
import threading
from functools import lru_cache
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from fleet.agent.errors import (
    PermanentTargetError,
    TargetBusy,
    TargetError,
    TargetUnavailable,
    TargetUnreachable,
    Unauthorized,
    error_for_code,
)
from fleet.agent.models import (
    ApplyLogEntry,
    ApplyResult,
    HealthReport,
    InstanceCreated,
    InstanceList,
    Manifest,
    TargetState,
    check_instance_name,
)

if TYPE_CHECKING:  # the agent's server side (uvicorn) stays out of a client's process
    from fleet.agent.faults import Faults

__all__ = ["AgentClient"]

_LOG = TypeAdapter(list[ApplyLogEntry])
_M = TypeVar("_M", bound=BaseModel)


_TLS_GUARD = threading.Lock()


@lru_cache(maxsize=1)
def _tls_context_once() -> ssl.SSLContext:
    return ssl.create_default_context()


def _tls_context() -> ssl.SSLContext:
    """One TLS context for every client: building one loads the CA store, which costs
    more CPU than a whole apply when a rollout opens a client per instance. Built
    under a lock: a rollout's deploy threads all ask for it at once as they start,
    and each would otherwise build its own."""
    with _TLS_GUARD:
        return _tls_context_once()


class AgentClient:
    """Speaks to one agent, or to one instance of a host when given `instance`:
    `apply`, `state`, `health`, `rollback` (the `Target` interface)."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        instance: str | None = None,
        timeout: float = 60.0,
        connect_timeout: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.instance = None if instance is None else check_instance_name(instance)
        # A checked name is safe in a path: lowercase letters, digits and dashes.
        self._prefix = "/v1" if instance is None else f"/v1/instances/{instance}"
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            transport=transport,
            verify=_tls_context(),
        )

    def __repr__(self) -> str:
        if self.instance is None:
            return f"AgentClient({self.base_url!r})"
        return f"AgentClient({self.base_url!r}, instance={self.instance!r})"

    def apply(self, manifest: Manifest) -> ApplyResult:
        body = self._request("POST", f"{self._prefix}/apply", json=manifest.model_dump(mode="json"))
        return self._parse(ApplyResult, body)

    def state(self) -> TargetState:
        return self._parse(TargetState, self._request("GET", f"{self._prefix}/state"))

    def health(self) -> HealthReport:
        return self._parse(HealthReport, self._request("GET", f"{self._prefix}/health"))

    def rollback(self, manifest_hash: str | None = None) -> ApplyResult:
        body = self._request(
            "POST", f"{self._prefix}/rollback", json={"manifest_hash": manifest_hash}
        )
        return self._parse(ApplyResult, body)

    def applies(self) -> list[ApplyLogEntry]:
        """The instance's apply log, oldest first."""
        try:
            return _LOG.validate_python(self._request("GET", f"{self._prefix}/applies"))
        except ValidationError as exc:
            raise PermanentTargetError(f"Unexpected answer from {self.base_url}: {exc}") from None

    def instances(self) -> list[str]:
        """Every instance the host serves (a many-instance host only)."""
        return self._parse(InstanceList, self._request("GET", "/v1/instances")).instances

    def create_instance(self, name: str) -> bool:
        """Make the host serve instance `name`; False when it already did."""
        path = f"/v1/instances/{check_instance_name(name)}"
        return self._parse(InstanceCreated, self._request("PUT", path)).created

    def set_faults(self, faults: Faults) -> Faults:
        """Switch the agent's injected faults (test use)."""
        body = self._request("PUT", "/v1/faults", json=faults.model_dump(mode="json"))
        from fleet.agent.faults import Faults  # test use only: kept out of a deploy's imports

        return self._parse(Faults, body)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        where = f"{method} {self.base_url}{path}"
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise TargetUnreachable(f"{where}: timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise TargetUnreachable(f"{where}: {type(exc).__name__}: {exc}") from exc
        if response.is_success:
            try:
                return response.json()
            except ValueError:
                raise TargetUnavailable(f"{where}: answer is not JSON") from None
        raise _error_for(where, response)

    def _parse(self, model: type[_M], body: Any) -> _M:
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            raise PermanentTargetError(f"Unexpected answer from {self.base_url}: {exc}") from None


def _error_for(where: str, response: httpx.Response) -> TargetError:
    status = response.status_code
    code, detail = None, response.text[:500]
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = body.get("error")
        detail = str(body.get("detail", detail))
    message = f"{where}: HTTP {status}: {detail}"
    if status == 409:
        return TargetBusy(message)
    if status >= 500:
        return TargetUnavailable(message)
    if status in (401, 403):
        return Unauthorized(message)
    cls = error_for_code(code) if isinstance(code, str) else None
    if cls is not None and issubclass(cls, PermanentTargetError):
        return cls(message)
    return PermanentTargetError(message)
