"""Errors of deploy targets (the agent, command targets, local directories).

    FleetError
    └── TargetError
        ├── TransientTargetError        a retry can fix it
        │   ├── TargetUnreachable       connection refused or reset, timeout, hang
        │   ├── TargetUnavailable       5xx from the agent
        │   └── TargetBusy              another apply holds the instance (409)
        └── PermanentTargetError        a retry cannot fix it
            ├── Unauthorized            missing or wrong token (401)
            ├── ManifestRejected        unknown fields, bad names (also InputError)
            │   └── InstanceNameRejected   a host's instance name that cannot be one
            ├── ArtifactError           artifact unreachable or unreadable
            │   ├── ChecksumMismatch
            │   └── UnsafeArchive       a member would escape the release directory
            ├── ReleaseNotFound         rollback target not on disk
            ├── InstanceNotFound        no such instance on a many-instance host (404)
            ├── HealthCheckFailed
            └── CommandFailed           a command target exited non-zero

Each class carries a stable `code`: the agent sends it in error bodies and the
client maps it back to the same class.
"""

from __future__ import annotations

from fleet.core.errors import FleetError, InputError

__all__ = [
    "AgentConfigError",
    "ArtifactError",
    "ChecksumMismatch",
    "CommandFailed",
    "HealthCheckFailed",
    "InstanceNameRejected",
    "InstanceNotFound",
    "ManifestRejected",
    "PermanentTargetError",
    "ReleaseNotFound",
    "TargetBusy",
    "TargetError",
    "TargetUnavailable",
    "TargetUnreachable",
    "TransientTargetError",
    "Unauthorized",
    "UnsafeArchive",
    "error_for_code",
]


class TargetError(FleetError):
    """A deploy target refused or failed an operation."""

    code = "target_error"
    status = 500


class TransientTargetError(TargetError):
    """Worth retrying: the same request may succeed later."""

    code = "transient"
    status = 503


class TargetUnreachable(TransientTargetError):
    code = "unreachable"
    status = 503


class TargetUnavailable(TransientTargetError):
    code = "unavailable"
    status = 503


class TargetBusy(TransientTargetError):
    code = "busy"
    status = 409


class PermanentTargetError(TargetError):
    """Not worth retrying: the request itself or the release is at fault."""

    code = "permanent"
    status = 400


class Unauthorized(PermanentTargetError):
    code = "unauthorized"
    status = 401


class ManifestRejected(PermanentTargetError, InputError):
    code = "invalid_manifest"
    status = 422


class InstanceNameRejected(ManifestRejected):
    """A many-instance host refuses a name that is not a valid instance name."""

    code = "invalid_instance_name"
    status = 422


class ArtifactError(PermanentTargetError):
    code = "artifact_unavailable"
    status = 424


class ChecksumMismatch(ArtifactError):
    code = "checksum_mismatch"
    status = 422


class UnsafeArchive(ArtifactError):
    code = "unsafe_archive"
    status = 422


class ReleaseNotFound(PermanentTargetError):
    code = "release_not_found"
    status = 404


class InstanceNotFound(PermanentTargetError):
    """The host serves no instance of that name (or the agent is of the other kind)."""

    code = "instance_not_found"
    status = 404


class HealthCheckFailed(PermanentTargetError):
    code = "unhealthy"
    status = 424


class CommandFailed(PermanentTargetError):
    code = "command_failed"
    status = 424


_BY_CODE: dict[str, type[TargetError]] = {
    cls.code: cls
    for cls in (
        TargetError,
        TransientTargetError,
        TargetUnreachable,
        TargetUnavailable,
        TargetBusy,
        PermanentTargetError,
        Unauthorized,
        ManifestRejected,
        InstanceNameRejected,
        ArtifactError,
        ChecksumMismatch,
        UnsafeArchive,
        ReleaseNotFound,
        InstanceNotFound,
        HealthCheckFailed,
        CommandFailed,
    )
}


def error_for_code(code: str) -> type[TargetError] | None:
    """The error class an agent's error `code` stands for, or None when unknown."""
    return _BY_CODE.get(code)


class AgentConfigError(InputError):
    """The agent cannot start with the options given (token file, root, port)."""
