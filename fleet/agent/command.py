"""A deploy target that runs the operator's own commands (helm, ansible, a script).

The apply command gets the manifest JSON on stdin and, in its environment,
`FLEET_INSTANCE`, `FLEET_REVISION`, `FLEET_MANIFEST_HASH`, `FLEET_VERSIONS`
(`api=2.4.1 web=2.4.0`) and one `FLEET_VERSION_<COMPONENT>` per component
(`FLEET_VERSION_API_GATEWAY` for `api-gateway`). Arguments may use the
placeholders `{instance}`, `{revision}` and `{manifest_hash}`; the template is
split like a shell would, but no shell runs it. The exit code decides: 0 is
success, one of `transient_exit_codes` (default 75, EX_TEMPFAIL) a failure worth
retrying, anything else a permanent failure.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fleet.agent.errors import CommandFailed, PermanentTargetError, TransientTargetError
from fleet.agent.models import ApplyResult, HealthReport, Manifest, TargetState

__all__ = ["CommandRunner"]


@dataclass
class CommandRunner:
    """Apply, state, health and rollback by running commands (the `Target` interface)."""

    apply_command: str
    state_command: str | None = None
    health_command: str | None = None
    rollback_command: str | None = None
    timeout: float = 600.0
    transient_exit_codes: frozenset[int] = frozenset({75})
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None

    def apply(self, manifest: Manifest) -> ApplyResult:
        if self.state_command:
            current = self.state()
            if current.manifest_hash == manifest.manifest_hash:
                return ApplyResult(
                    instance=manifest.instance,
                    manifest_hash=manifest.manifest_hash,
                    revision=manifest.revision,
                    changed=False,
                    previous_hash=current.manifest_hash,
                    message="already current: nothing to do",
                )
            previous = current.manifest_hash
        else:
            previous = None
        placeholders = {
            "instance": manifest.instance,
            "revision": str(manifest.revision),
            "manifest_hash": manifest.manifest_hash,
        }
        env = {
            "FLEET_INSTANCE": manifest.instance,
            "FLEET_REVISION": str(manifest.revision),
            "FLEET_MANIFEST_HASH": manifest.manifest_hash,
            "FLEET_VERSIONS": " ".join(f"{n}={v}" for n, v in manifest.versions().items()),
        }
        for name, version in manifest.versions().items():
            env[f"FLEET_VERSION_{name.upper().replace('-', '_')}"] = version
        stdin = json.dumps(manifest.model_dump(mode="json"))
        output = self._run("apply", self.apply_command, placeholders, env, stdin)
        return ApplyResult(
            instance=manifest.instance,
            manifest_hash=manifest.manifest_hash,
            revision=manifest.revision,
            changed=True,
            previous_hash=previous,
            message=f"apply command succeeded: {_tail(output)}".rstrip(": "),
        )

    def state(self) -> TargetState:
        """The state command's stdout as JSON (TargetState fields); empty without one."""
        if not self.state_command:
            return TargetState()
        output = self._run("state", self.state_command, {}, {}, None)
        try:
            return TargetState.model_validate_json(output)
        except ValueError as exc:
            raise PermanentTargetError(
                f"State command {self.state_command!r} printed no valid state: {output[:200]!r}"
            ) from exc

    def health(self) -> HealthReport:
        """Healthy when the health command exits 0 (or when there is none)."""
        if not self.health_command:
            return HealthReport(healthy=True, detail="no health command configured")
        try:
            output = self._run("health", self.health_command, {}, {}, None)
        except CommandFailed as exc:
            return HealthReport(healthy=False, detail=str(exc))
        return HealthReport(healthy=True, detail=_tail(output))

    def rollback(self, manifest_hash: str | None = None) -> ApplyResult:
        """Run the rollback command with `FLEET_ROLLBACK_TO` (empty: the previous release)."""
        if not self.rollback_command:
            raise PermanentTargetError("This command target has no rollback command")
        target = manifest_hash or ""
        env = {"FLEET_ROLLBACK_TO": target}
        output = self._run("rollback", self.rollback_command, {"manifest_hash": target}, env, None)
        state = self.state() if self.state_command else TargetState()
        return ApplyResult(
            instance=state.instance,
            manifest_hash=state.manifest_hash or target,
            revision=state.revision,
            changed=True,
            message=f"rollback command succeeded: {_tail(output)}".rstrip(": "),
        )

    def _run(
        self,
        what: str,
        template: str,
        placeholders: Mapping[str, str],
        extra_env: Mapping[str, str],
        stdin: str | None,
    ) -> str:
        try:
            argv = [part.format_map(placeholders) for part in shlex.split(template)]
        except (KeyError, ValueError, IndexError) as exc:
            raise PermanentTargetError(
                f"Invalid {what} command {template!r}: {type(exc).__name__}: {exc}"
            ) from None
        if not argv:
            raise PermanentTargetError(f"Empty {what} command")
        env = {**os.environ, **self.env, **extra_env}
        try:
            proc = subprocess.run(
                argv,
                input=stdin,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                env=env,
                cwd=self.cwd,
                check=False,
            )
        except FileNotFoundError:
            raise CommandFailed(f"{what} command not found: {argv[0]!r}") from None
        except PermissionError:
            raise CommandFailed(f"{what} command not executable: {argv[0]!r}") from None
        except subprocess.TimeoutExpired:
            raise TransientTargetError(
                f"{what} command {argv[0]!r} timed out after {self.timeout}s"
            ) from None
        if proc.returncode == 0:
            return proc.stdout
        detail = _tail(proc.stderr or proc.stdout)
        message = f"{what} command {argv[0]!r} exited {proc.returncode}: {detail}"
        if proc.returncode in self.transient_exit_codes:
            raise TransientTargetError(message)
        raise CommandFailed(message)


def _tail(output: str) -> str:
    lines = output.strip().splitlines()
    return lines[-1][:300] if lines else ""
