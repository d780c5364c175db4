"""One instance's installation on disk: the apply logic shared by the agent and LocalTarget.

Layout under `root`::

    current -> releases/<manifest-hash>      switched by rename, never edited
    releases/<manifest-hash>/<component>/    unpacked artifacts
    releases/<manifest-hash>/.release.json   the manifest and when it was applied
    staging/                                 work in progress; emptied before every operation
    apply-log.jsonl                          one line per apply or rollback
    .lock                                    flock: one operation at a time

A release directory appears under `releases/` only whole (built in `staging/`,
then renamed), and `current` only ever points at such a directory, so a process
killed at any moment leaves `current` on the old release or the new one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from fleet.agent.errors import (
    ManifestRejected,
    PermanentTargetError,
    ReleaseNotFound,
    TargetBusy,
    TargetError,
)
from fleet.agent.fetch import fetch_artifact
from fleet.agent.models import (
    ApplyLogEntry,
    ApplyResult,
    ComponentHealth,
    HealthReport,
    Manifest,
    TargetState,
    _manifest_hash,
)
from fleet.agent.unpack import unpack_archive

__all__ = ["DEFAULT_KEEP", "Installation"]

DEFAULT_KEEP = 5
_META = ".release.json"


class Installation:
    """Apply, inspect, health-check and roll back the release tree under `root`."""

    def __init__(
        self,
        root: Path,
        *,
        keep: int = DEFAULT_KEEP,
        fetch_timeout: float = 30.0,
        health_timeout: float = 10.0,
        http: httpx.Client | None = None,
        component_delay: float = 0.0,
    ) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep!r}")
        self.root = Path(root).absolute()
        self.keep = keep
        self.fetch_timeout = fetch_timeout
        self.health_timeout = health_timeout
        self.http = http
        self._own_http = http is None
        # Test-only slow-down after each unpacked component, so a kill can land mid-apply.
        self.component_delay = component_delay
        self.releases = self.root / "releases"
        self.staging = self.root / "staging"
        self.current_link = self.root / "current"
        self.log_path = self.root / "apply-log.jsonl"
        self.releases.mkdir(parents=True, exist_ok=True)
        self.staging.mkdir(exist_ok=True)

    # -- operations -------------------------------------------------------------------------

    def apply(self, manifest: Manifest) -> ApplyResult:
        """Install `manifest` and switch `current` to it; a no-op when it is already current."""
        started, t0 = _now(), time.monotonic()
        with self._locked():
            previous = self._current_hash()
            try:
                try:
                    result = self._apply_locked(manifest, previous, t0)
                except OSError as exc:
                    raise PermanentTargetError(f"Cannot write the release: {exc}") from exc
            except TargetError as exc:
                self._log(
                    "apply", manifest.manifest_hash, manifest.revision, "failed", started, exc
                )
                raise
            outcome = "applied" if result.changed else "noop"
            self._log("apply", manifest.manifest_hash, manifest.revision, outcome, started)
            return result

    def rollback(self, manifest_hash: str | None = None) -> ApplyResult:
        """Switch `current` to a release still on disk (default: the previous revision)."""
        started, t0 = _now(), time.monotonic()
        if manifest_hash is not None:
            try:
                _manifest_hash(manifest_hash)
            except ValueError as exc:
                raise ManifestRejected(str(exc)) from None
        with self._locked():
            self._clean_staging()
            current = self._current_hash()
            current_meta = self._read_meta(current) if current else None
            try:
                target = self._rollback_target(manifest_hash, current, current_meta)
            except TargetError as exc:
                self._log("rollback", manifest_hash, None, "failed", started, exc)
                raise
            meta = self._read_meta(target)
            assert meta is not None
            manifest = Manifest.model_validate(meta["manifest"])
            if target == current:
                self._log("rollback", target, manifest.revision, "noop", started)
                return self._result(manifest, False, current, "already current: nothing to do", t0)
            self._switch(target)
            self._log("rollback", target, manifest.revision, "applied", started)
            return self._result(manifest, True, current, f"rolled back to {target}", t0)

    def state(self) -> TargetState:
        """What `current` points at, and which releases are on disk."""
        current = self._current_hash()
        releases = [h for h, _ in self._releases_newest_first()]
        meta = self._read_meta(current) if current else None
        if meta is None:
            return TargetState(releases=releases)
        manifest = Manifest.model_validate(meta["manifest"])
        return TargetState(
            instance=manifest.instance,
            manifest_hash=manifest.manifest_hash,
            revision=manifest.revision,
            components=manifest.versions(),
            applied_at=datetime.fromisoformat(meta["applied_at"]),
            releases=releases,
        )

    def health(self) -> HealthReport:
        """Run each component's `bin/healthcheck` (exit 0 = healthy); absent means healthy."""
        current = self._current_hash()
        meta = self._read_meta(current) if current else None
        if current is None or meta is None:
            return HealthReport(healthy=False, detail="no release applied")
        manifest = Manifest.model_validate(meta["manifest"])
        release = self.releases / current
        components = {
            name: self._check_component(manifest, name, release / name)
            for name in manifest.components
        }
        return HealthReport(
            healthy=all(c.healthy for c in components.values()),
            manifest_hash=current,
            components=components,
        )

    def apply_log(self) -> list[ApplyLogEntry]:
        """Every logged operation, oldest first."""
        try:
            lines = self.log_path.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [ApplyLogEntry.model_validate_json(line) for line in lines if line.strip()]

    def recover(self) -> None:
        """Remove what a killed operation left in `staging/` (skipped while one runs)."""
        with contextlib.suppress(TargetBusy), self._locked():
            self._clean_staging()

    def close(self) -> None:
        """Close the HTTP client used for downloads, if one was opened."""
        if self.http is not None:
            self.http.close()

    # -- apply internals --------------------------------------------------------------------

    def _apply_locked(self, manifest: Manifest, previous: str | None, t0: float) -> ApplyResult:
        self._clean_staging()
        target = manifest.manifest_hash
        release = self.releases / target
        meta = self._read_meta(target)
        if previous == target and meta is not None:
            if meta["manifest"].get("revision") != manifest.revision:
                self._write_meta(release, manifest, meta["applied_at"])
                return self._result(
                    manifest,
                    False,
                    previous,
                    f"already current (now revision {manifest.revision})",
                    t0,
                )
            return self._result(manifest, False, previous, "already current: nothing to do", t0)
        if meta is not None and Manifest.model_validate(meta["manifest"]).components == (
            manifest.components
        ):
            # The same release is still on disk: switch back to it without downloading.
            self._write_meta(release, manifest, _now().isoformat())
        else:
            self._build_release(manifest, release)
        self._switch(target)
        self._prune(keep_also=target)
        return self._result(manifest, True, previous, f"applied {target}", t0)

    def _build_release(self, manifest: Manifest, release: Path) -> None:
        stage = Path(tempfile.mkdtemp(dir=self.staging, prefix=f"{manifest.manifest_hash}."))
        stage.chmod(0o755)
        downloads = Path(tempfile.mkdtemp(dir=self.staging, prefix="download."))
        try:
            for name, spec in manifest.components.items():
                archive = downloads / name
                fetch_artifact(
                    spec.url,
                    archive,
                    sha256=spec.sha256,
                    client=self._http_client() if spec.url.startswith("http") else None,
                    timeout=self.fetch_timeout,
                )
                unpack_archive(archive, stage / name, label=f"component {name!r}")
                archive.unlink()
                if self.component_delay:
                    time.sleep(self.component_delay)
            self._write_meta(stage, manifest, _now().isoformat())
            if release.exists():
                # A stale release with the same hash but other content: move it out whole.
                os.rename(release, self.staging / f"stale.{os.getpid()}.{time.monotonic_ns()}")
            os.rename(stage, release)
        finally:
            if self._own_http and self.http is not None:
                # A client made here is not kept between applies: no sockets left open.
                self.http.close()
                self.http = None
            shutil.rmtree(downloads, ignore_errors=True)
            if stage.exists():
                shutil.rmtree(stage, ignore_errors=True)

    def _http_client(self) -> httpx.Client:
        # One client for every download of an apply: building one costs ~10-150 ms.
        if self.http is None:
            self.http = httpx.Client(timeout=self.fetch_timeout, follow_redirects=True)
        return self.http

    def _switch(self, manifest_hash: str) -> None:
        tmp = self.root / f".current.{os.getpid()}.{time.monotonic_ns()}"
        os.symlink(f"releases/{manifest_hash}", tmp)
        os.replace(tmp, self.current_link)

    def _prune(self, *, keep_also: str) -> None:
        kept = 0
        for manifest_hash, _ in self._releases_newest_first(include_broken=True):
            if manifest_hash == keep_also:
                continue
            kept += 1
            if kept >= self.keep:
                # Out of `releases/` first, so a kill never leaves a half-deleted release there.
                trash = self.staging / f"prune.{manifest_hash}.{time.monotonic_ns()}"
                os.rename(self.releases / manifest_hash, trash)
                shutil.rmtree(trash, ignore_errors=True)

    def _rollback_target(
        self, manifest_hash: str | None, current: str | None, current_meta: dict[str, Any] | None
    ) -> str:
        on_disk = self._releases_newest_first()
        if manifest_hash is not None:
            if manifest_hash not in dict(on_disk):
                names = ", ".join(h for h, _ in on_disk) or "none"
                raise ReleaseNotFound(
                    f"Release {manifest_hash!r} is not on disk (releases on disk: {names})"
                )
            return manifest_hash
        if current is None or current_meta is None:
            raise ReleaseNotFound("Nothing to roll back: no release applied")
        revision = current_meta["manifest"]["revision"]
        for candidate, key in on_disk:
            if candidate != current and key[0] < revision:
                return candidate
        raise ReleaseNotFound(
            f"No release older than revision {revision} ({current!r}) is on disk to roll back to"
        )

    # -- disk helpers -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.root / ".lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise TargetBusy("Instance is busy: another apply or rollback is running") from None
            yield
        finally:
            os.close(fd)

    def _clean_staging(self) -> None:
        for leftover in self.staging.iterdir():
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
        for link in self.root.glob(".current.*"):
            link.unlink(missing_ok=True)

    def _current_hash(self) -> str | None:
        try:
            target = os.readlink(self.current_link)
        except FileNotFoundError:
            return None
        return Path(target).name

    def _read_meta(self, manifest_hash: str | None) -> dict[str, Any] | None:
        if not manifest_hash:
            return None
        try:
            data = json.loads((self.releases / manifest_hash / _META).read_text())
        except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def _write_meta(self, release: Path, manifest: Manifest, applied_at: str) -> None:
        body = json.dumps({"manifest": manifest.model_dump(mode="json"), "applied_at": applied_at})
        tmp = release / f"{_META}.tmp"
        tmp.write_text(body)
        os.replace(tmp, release / _META)

    def _releases_newest_first(
        self, *, include_broken: bool = False
    ) -> list[tuple[str, tuple[int, str]]]:
        found = []
        for entry in self.releases.iterdir():
            meta = self._read_meta(entry.name)
            if meta is None:
                if include_broken:
                    found.append((entry.name, (-1, "")))
                continue
            found.append((entry.name, (int(meta["manifest"]["revision"]), meta["applied_at"])))
        found.sort(key=lambda item: item[1], reverse=True)
        return found

    def _check_component(self, manifest: Manifest, name: str, directory: Path) -> ComponentHealth:
        check = directory / "bin" / "healthcheck"
        if not check.is_file():
            return ComponentHealth(healthy=True, checked=False, detail="no bin/healthcheck")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "FLEET_INSTANCE": manifest.instance,
            "FLEET_COMPONENT": name,
            "FLEET_VERSION": manifest.components[name].version,
            "FLEET_COMPONENT_DIR": str(directory),
        }
        try:
            proc = subprocess.run(
                [str(check)],
                cwd=directory,
                env=env,
                capture_output=True,
                text=True,
                timeout=self.health_timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return ComponentHealth(
                healthy=False, checked=True, detail=f"timed out after {self.health_timeout}s"
            )
        except OSError as exc:
            return ComponentHealth(healthy=False, checked=True, detail=f"cannot run: {exc}")
        output = (proc.stdout + proc.stderr).strip().splitlines()
        tail = output[-1][:200] if output else ""
        return ComponentHealth(
            healthy=proc.returncode == 0,
            checked=True,
            detail=f"exit {proc.returncode}" + (f": {tail}" if tail else ""),
        )

    def _log(
        self,
        op: str,
        manifest_hash: str | None,
        revision: int | None,
        outcome: str,
        started: datetime,
        error: Exception | None = None,
    ) -> None:
        entry = ApplyLogEntry.model_validate(
            {
                "op": op,
                "manifest_hash": manifest_hash,
                "revision": revision,
                "outcome": outcome,
                "started_at": started,
                "finished_at": _now(),
                "pid": os.getpid(),
                "error": str(error) if error else None,
            }
        )
        line = (entry.model_dump_json() + "\n").encode()
        fd = os.open(self.log_path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    @staticmethod
    def _result(
        manifest: Manifest, changed: bool, previous: str | None, message: str, t0: float
    ) -> ApplyResult:
        return ApplyResult(
            instance=manifest.instance,
            manifest_hash=manifest.manifest_hash,
            revision=manifest.revision,
            changed=changed,
            previous_hash=previous,
            message=message,
            duration_ms=round((time.monotonic() - t0) * 1000, 3),
        )


def _now() -> datetime:
    return datetime.now(UTC)
