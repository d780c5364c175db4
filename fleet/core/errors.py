"""Every error Fleet raises on purpose.

    FleetError
    ├── InputError (also ValueError): bad input, quoting the bad value
    │   ├── InvalidName
    │   ├── InvalidVersion
    │   ├── InvalidSpecifier
    │   ├── InvalidDuration
    │   ├── InvalidIdentity           (a person's name that cannot be one)
    │   ├── FleetFileError            (every problem of a fleet file at once)
    │   ├── InvalidOSVRecord          (an OSV record that cannot be read)
    │   └── UnmappedOSVPackage        (no OSV package maps to a component)
    ├── PlanError: one instance cannot be planned (the others go on)
    │   ├── UnknownVersionError       (current version not in the registry)
    │   ├── PinConflictError          (pins with an empty intersection)
    │   ├── IncompatibleError         (no combination meets every `requires`)
    │   └── SecurityFixError          (an enforced advisory cannot be fixed)
    ├── RollbackError
    │   ├── NoRollbackTarget
    │   └── RollbackRefused           (the security floor)
    ├── NotFoundError
    ├── ConflictError
    ├── PermissionDenied              (e.g. four eyes)
    └── AuditChainError               (the audit chain is broken)

The layers above add their own subclasses (agent and target errors) under
`FleetError`, so one `except FleetError` catches everything Fleet means.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AuditChainError",
    "ConflictError",
    "FleetError",
    "FleetFileError",
    "IncompatibleError",
    "InputError",
    "InvalidDuration",
    "InvalidIdentity",
    "InvalidName",
    "InvalidOSVRecord",
    "InvalidSpecifier",
    "InvalidVersion",
    "NoRollbackTarget",
    "NotFoundError",
    "PermissionDenied",
    "PinConflictError",
    "PlanError",
    "RollbackError",
    "RollbackRefused",
    "SecurityFixError",
    "UnknownVersionError",
    "UnmappedOSVPackage",
]


class FleetError(Exception):
    """Root of every error Fleet raises on purpose."""


class InputError(FleetError, ValueError):
    """Input that Fleet refuses; the message quotes the bad value."""


class InvalidName(InputError):
    pass


class InvalidVersion(InputError):
    pass


class InvalidSpecifier(InputError):
    pass


class InvalidDuration(InputError):
    pass


class InvalidIdentity(InputError):
    pass


class FleetFileError(InputError):
    """A fleet file with one or more problems, each `where: what`."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class InvalidOSVRecord(InputError):
    """An OSV record Fleet cannot read; the message names the record and the problem."""


class UnmappedOSVPackage(InputError):
    """No affected package of an OSV record maps to a Fleet component."""

    def __init__(self, record_id: str, package_names: Sequence[str]) -> None:
        self.record_id = record_id
        self.package_names = list(package_names)
        quoted = ", ".join(repr(n) for n in self.package_names)
        plural = "s" if len(self.package_names) > 1 else ""
        super().__init__(
            f"unknown component for OSV package{plural} {quoted} in {record_id}; "
            f"map it with --component-map {self.package_names[0]}=COMPONENT"
        )


class PlanError(FleetError):
    """One instance cannot be planned."""


class UnknownVersionError(PlanError):
    pass


class PinConflictError(PlanError):
    pass


class IncompatibleError(PlanError):
    pass


class SecurityFixError(PlanError):
    pass


class RollbackError(FleetError):
    pass


class NoRollbackTarget(RollbackError):
    pass


class RollbackRefused(RollbackError):
    pass


class NotFoundError(FleetError, LookupError):
    pass


class ConflictError(FleetError):
    pass


class PermissionDenied(FleetError):
    pass


class AuditChainError(FleetError):
    pass
