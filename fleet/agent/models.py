"""Values exchanged with deploy targets: the manifest in, results and state out."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from fleet.agent.errors import HealthCheckFailed, InstanceNameRejected, ManifestRejected
from fleet.core.errors import InvalidName
from fleet.core.names import NAME_PATTERN, validate_name

__all__ = [
    "ApplyLogEntry",
    "ApplyResult",
    "ComponentHealth",
    "ComponentSpec",
    "HealthReport",
    "InstanceCreated",
    "InstanceList",
    "Manifest",
    "TargetState",
    "check_instance_name",
    "parse_manifest",
]

_HASH = re.compile(r"^[0-9a-f]{8,64}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# Versions end up in environment variables and state files: printable, no separators.
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+!_-]{0,63}$")
_QUOTED_MAX = 80


def _component_name(name: str) -> str:
    try:
        return validate_name(name, kind="component")
    except InvalidName as exc:
        raise ValueError(str(exc)) from None


def _instance_name(name: str) -> str:
    try:
        return validate_name(name, kind="instance")
    except InvalidName as exc:
        raise ValueError(str(exc)) from None


def check_instance_name(name: str) -> str:
    """`name` when it is a valid instance name, else `InstanceNameRejected` quoting it."""
    try:
        return validate_name(name, kind="instance")
    except InvalidName as exc:
        if isinstance(name, str) and len(name) > _QUOTED_MAX:
            # A name from a URL may be long; quote its start, not all of it.
            raise InstanceNameRejected(
                f"Invalid instance name: {name[:_QUOTED_MAX]!r}... ({len(name)} characters; "
                f"expected {NAME_PATTERN.pattern})"
            ) from None
        raise InstanceNameRejected(str(exc)) from None


def _manifest_hash(value: str) -> str:
    if not _HASH.fullmatch(value):
        raise ValueError(f"Invalid manifest hash: {value!r} (expected 8-64 lowercase hex digits)")
    return value


def _sha256(value: str) -> str:
    if not _SHA256.fullmatch(value):
        raise ValueError(f"Invalid sha256: {value!r} (expected 64 lowercase hex digits)")
    return value


def _version(value: str) -> str:
    if not _VERSION.fullmatch(value):
        raise ValueError(f"Invalid version: {value!r}")
    return value


ComponentName = Annotated[str, AfterValidator(_component_name)]
ManifestHash = Annotated[str, AfterValidator(_manifest_hash)]


class ComponentSpec(BaseModel):
    """One component of a manifest: the version and where its artifact is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Annotated[str, AfterValidator(_version)]
    url: Annotated[str, Field(min_length=1, max_length=4096)]
    sha256: Annotated[str, AfterValidator(_sha256)]


class Manifest(BaseModel):
    """What an instance should run, as the agent receives it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    instance: Annotated[str, AfterValidator(_instance_name)]
    revision: Annotated[int, Field(ge=1)]
    manifest_hash: ManifestHash
    components: dict[ComponentName, ComponentSpec]

    def versions(self) -> dict[str, str]:
        return {name: spec.version for name, spec in self.components.items()}


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem, `where: what`, quoting the bad value."""
    lines = []
    for err in exc.errors():
        where = (
            "".join(
                f".{part}" if isinstance(part, str) and part.isidentifier() else f"[{part!r}]"
                for part in err["loc"]
                if part != "[key]"
            ).lstrip(".")
            or "manifest"
        )
        if err["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown field {err['loc'][-1]!r}")
        elif err["type"] == "missing":
            lines.append(f"{where}: field required")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            if "input" in err and err["type"] != "value_error":
                msg = f"{msg} (got {err['input']!r})"
            lines.append(f"{where}: {msg}")
    return "; ".join(lines)


def parse_manifest(data: Any) -> Manifest:
    """Validate a manifest document, raising `ManifestRejected` naming each problem."""
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        raise ManifestRejected(f"Invalid manifest: {describe_validation_error(exc)}") from None


class ApplyResult(BaseModel):
    """The outcome of an apply or a rollback."""

    model_config = ConfigDict(frozen=True)

    instance: str | None
    manifest_hash: str
    revision: int | None
    changed: bool
    previous_hash: str | None = None
    message: str
    duration_ms: float = 0.0


class TargetState(BaseModel):
    """What an instance runs now (all fields None before the first apply)."""

    model_config = ConfigDict(frozen=True)

    instance: str | None = None
    manifest_hash: str | None = None
    revision: int | None = None
    components: dict[str, str] = Field(default_factory=dict)
    applied_at: datetime | None = None
    releases: list[str] = Field(default_factory=list)


class ComponentHealth(BaseModel):
    model_config = ConfigDict(frozen=True)

    healthy: bool
    checked: bool
    detail: str = ""


class HealthReport(BaseModel):
    """Per-component health of the current release."""

    model_config = ConfigDict(frozen=True)

    healthy: bool
    manifest_hash: str | None = None
    components: dict[str, ComponentHealth] = Field(default_factory=dict)
    detail: str = ""

    def raise_for_health(self) -> HealthReport:
        """Return self when healthy, else raise `HealthCheckFailed` naming the failures."""
        if self.healthy:
            return self
        failing = [f"{n}: {c.detail}" for n, c in self.components.items() if not c.healthy]
        what = "; ".join(failing) or self.detail or "unhealthy"
        raise HealthCheckFailed(f"Health check failed for {self.manifest_hash!r}: {what}")


class ApplyLogEntry(BaseModel):
    """One line of the apply log: an operation that held the instance lock."""

    model_config = ConfigDict(frozen=True)

    op: Literal["apply", "rollback"]
    manifest_hash: str | None
    revision: int | None
    outcome: Literal["applied", "noop", "failed"]
    started_at: datetime
    finished_at: datetime
    pid: int
    error: str | None = None


class InstanceList(BaseModel):
    """The instances a many-instance agent host serves."""

    model_config = ConfigDict(frozen=True)

    instances: list[str]


class InstanceCreated(BaseModel):
    """The answer to creating an instance on a host: `created` is False when it existed."""

    model_config = ConfigDict(frozen=True)

    instance: str
    created: bool
