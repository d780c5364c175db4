"""Manifests: what one instance runs (components -> versions), and their revisions."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from packaging.version import Version

from fleet.core.audit import canonical_json

__all__ = ["Manifest", "ManifestStatus", "Revision", "manifest_hash"]


class ManifestStatus(StrEnum):
    COMPILED = "compiled"
    APPROVED = "approved"
    DEPLOYED = "deployed"
    FAILED = "failed"
    ROLLED_BACK = "rolled-back"
    SUPERSEDED = "superseded"


def manifest_hash(components: Mapping[str, Version]) -> str:
    """sha256 of the canonical JSON of `{component: version}`.

    >>> manifest_hash({"api": Version("2.4.1")})[:12]
    '17ab3266c019'
    """
    canonical = canonical_json({name: str(v) for name, v in components.items()})
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Manifest:
    """Components -> versions, with a content hash that names the content."""

    components: Mapping[str, Version]

    @property
    def hash(self) -> str:
        return manifest_hash(self.components)

    def to_json(self) -> dict[str, str]:
        return {name: str(v) for name, v in sorted(self.components.items())}

    @classmethod
    def from_json(cls, data: Mapping[str, str]) -> Manifest:
        return cls({name: Version(v) for name, v in data.items()})


@dataclass(frozen=True, slots=True)
class Revision:
    """One numbered revision of an instance's manifest, as history keeps it.

    `deployed_at` is when it started running (None if it never ran);
    `rollback_of` names the revision a rollback restored.
    """

    number: int
    manifest: Manifest
    status: ManifestStatus
    created_at: datetime
    deployed_at: datetime | None = None
    parent: int | None = None
    rollback_of: int | None = None
    explanation: Mapping[str, str] = field(default_factory=dict)

    @property
    def ran(self) -> bool:
        """It was deployed successfully at some point (running now or before)."""
        return self.deployed_at is not None and self.status in (
            ManifestStatus.DEPLOYED,
            ManifestStatus.SUPERSEDED,
            ManifestStatus.ROLLED_BACK,
        )

    @property
    def good(self) -> bool:
        """It ran and was not rolled back as bad."""
        return self.ran and self.status is not ManifestStatus.ROLLED_BACK
