"""One interface over every way of reaching an instance.

`AgentClient` (HTTP agent), `CommandRunner` (operator commands) and
`Installation` (a local directory) all implement `Target`. Failures raise
`TransientTargetError` (retry) or `PermanentTargetError` (do not).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from fleet.agent.models import ApplyResult, HealthReport, Manifest, TargetState

__all__ = ["Target"]


@runtime_checkable
class Target(Protocol):
    def apply(self, manifest: Manifest) -> ApplyResult:
        """Install `manifest`; a no-op (`changed=False`) when it is already current."""
        ...

    def state(self) -> TargetState:
        """What the instance runs now."""
        ...

    def health(self) -> HealthReport:
        """Per-component health of what runs now; `raise_for_health()` to fail on it."""
        ...

    def rollback(self, manifest_hash: str | None = None) -> ApplyResult:
        """Go back to a release still in place (default: the previous one)."""
        ...
