"""Customer instances and what they currently run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from packaging.version import Version

from fleet.core.channels import Policy

__all__ = ["Instance"]


@dataclass(frozen=True, slots=True)
class Instance:
    """One customer's installation of the product.

    `current` maps each component to the version the instance runs; a
    component it does not list is not installed.
    """

    name: str
    customer: str
    channel: str
    current: Mapping[str, Version] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    policy_override: Policy | None = None
    target: str | None = None
