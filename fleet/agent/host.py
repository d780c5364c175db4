"""Many instances behind one agent: one installation per instance under the host's root.

Layout under the host's root::

    instances/<name>/        one `Installation` per instance (see installation.py)

An instance exists once it is created: when the agent starts (`--instance`,
`--instance-count`), by `PUT /v1/instances/{name}`, or found on disk from an
earlier run. An apply never creates one: a target block that names an instance
the host does not serve is a mistake to report, not a directory to make.

Names are checked like every instance name (`^[a-z][a-z0-9-]{0,62}$`); they
become directory names, so nothing else may reach the disk. Each instance has
its own lock file; nothing host-wide is held while an apply runs, so applies to
different instances run side by side, and a second apply to one instance finds
that instance busy, as on a single-instance agent.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from pathlib import Path

import httpx

from fleet.agent.errors import (
    InstanceNameRejected,
    InstanceNotFound,
    ManifestRejected,
    TargetError,
)
from fleet.agent.installation import DEFAULT_KEEP, Installation
from fleet.agent.models import ApplyResult, Manifest, check_instance_name

__all__ = ["INSTANCES_DIR", "AgentHost", "numbered_instances"]

INSTANCES_DIR = "instances"

log = logging.getLogger("fleet.agent")


def numbered_instances(prefix: str, count: int) -> list[str]:
    """`count` instance names `{prefix}-0001`, `{prefix}-0002`, ... (wider past 9999).

    The agent's `--instance-count` and `fleet blocks add-host --instance-count`
    both name instances with this, so a host and its target blocks agree.
    """
    if count < 0:
        raise ValueError(f"Invalid instance count: {count!r} (expected 0 or more)")
    width = max(4, len(str(count)))
    names = [f"{prefix}-{i:0{width}d}" for i in range(1, count + 1)]
    check_instance_name(prefix)
    if names:
        check_instance_name(names[-1])  # the longest: the others are valid when it is
    return names


class AgentHost:
    """The instances under `root`, each an `Installation` sharing one download client."""

    def __init__(
        self,
        root: Path,
        *,
        keep: int = DEFAULT_KEEP,
        http: httpx.Client | None = None,
        component_delay: float = 0.0,
    ) -> None:
        self.root = Path(root).absolute()
        self.keep = keep
        self.http = http
        self.component_delay = component_delay
        self.instances_dir = self.root / INSTANCES_DIR
        self.instances_dir.mkdir(parents=True, exist_ok=True)
        self._installations: dict[str, Installation] = {}
        # Held only to add an instance, never during an operation on one.
        self._adding = threading.Lock()
        for entry in sorted(self.instances_dir.iterdir()):
            try:
                name = check_instance_name(entry.name)
            except InstanceNameRejected:
                log.warning("ignoring %s: not an instance name", entry)
                continue
            if entry.is_dir() and not entry.is_symlink():
                self._installations[name] = self._installation(name)
            else:
                log.warning("ignoring %s: not a directory", entry)

    def names(self) -> list[str]:
        """Every instance served, sorted."""
        return sorted(self._installations)

    def __len__(self) -> int:
        return len(self._installations)

    def get(self, name: str) -> Installation:
        """The installation of instance `name`; `InstanceNotFound` when the host has none."""
        installation = self._installations.get(check_instance_name(name))
        if installation is None:
            raise InstanceNotFound(
                f"No instance {name!r} on this agent host (create it first: "
                f"PUT /v1/instances/{name} or `fleet agent serve --instance {name}`)"
            )
        return installation

    def create(self, name: str) -> bool:
        """Serve instance `name` from now on; False when it already was served."""
        check_instance_name(name)
        if name in self._installations:
            return False
        with self._adding:
            if name in self._installations:
                return False
            try:
                self._installations[name] = self._installation(name)
            except OSError as exc:
                raise TargetError(f"Cannot create instance {name!r}: {exc}") from None
        return True

    def create_all(self, names: Iterable[str]) -> int:
        """Create every instance of `names` not served yet; how many were new."""
        return sum(self.create(name) for name in names)

    def apply(self, name: str, manifest: Manifest) -> ApplyResult:
        """Apply `manifest` to instance `name`; it must be that instance's manifest."""
        installation = self.get(name)
        if manifest.instance != name:
            # A target block naming the wrong instance must not install another
            # customer's release here.
            raise ManifestRejected(
                f"Manifest is for instance {manifest.instance!r}, not {name!r}: "
                "check the target block's instance"
            )
        return installation.apply(manifest)

    def recover(self) -> None:
        """Clean what killed operations left in every instance's staging area."""
        for installation in list(self._installations.values()):
            installation.recover()

    def _installation(self, name: str) -> Installation:
        return Installation(
            self.instances_dir / name,
            keep=self.keep,
            http=self.http,
            component_delay=self.component_delay,
        )
