"""The artifact store: `<store>/<component>/<version>/<component>-<version>.tar.gz`.

Any directory laid out this way can be read from disk (`file://` URLs) or served
by any static HTTP server. `build_demo_artifacts` fills a store with small real
artifacts for a fleet file's versions and writes their sha256 into the file, so a
demo fleet deploys real bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fleet.core.errors import FleetFileError, InputError
from fleet.core.names import validate_name

__all__ = [
    "ArtifactRef",
    "InvalidArtifactVersion",
    "artifact_path",
    "build_demo_artifact",
    "build_demo_artifacts",
    "sha256_file",
]

_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+!_-]{0,63}$")
_MTIME = 1_700_000_000  # fixed, so rebuilding an artifact gives the same bytes and sha256

_HEALTHCHECK = """#!/bin/sh
# Healthy when VERSION is present and matches the version deployed.
here="$(cd "$(dirname "$0")/.." && pwd)"
test -f "$here/VERSION" || { echo "VERSION missing"; exit 1; }
if [ -n "$FLEET_VERSION" ] && [ "$(cat "$here/VERSION")" != "$FLEET_VERSION" ]; then
    echo "VERSION is $(cat "$here/VERSION"), expected $FLEET_VERSION"; exit 1
fi
echo "ok $(cat "$here/VERSION")"
"""
_UNHEALTHY = """#!/bin/sh
echo "demo artifact built unhealthy"
exit 1
"""


class InvalidArtifactVersion(InputError):
    pass


@dataclass(frozen=True)
class ArtifactRef:
    """Where an artifact is and what its bytes hash to."""

    url: str
    sha256: str
    path: Path

    def to_fleet_file(self) -> dict[str, str]:
        return {"url": self.url, "sha256": self.sha256}


def artifact_path(store: Path, component: str, version: str) -> Path:
    """The path of `component` at `version` in the store, validating both as path parts."""
    validate_name(component, kind="component")
    if not _VERSION.fullmatch(version):
        raise InvalidArtifactVersion(f"Invalid version for an artifact path: {version!r}")
    return store / component / version / f"{component}-{version}.tar.gz"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def build_demo_artifact(
    store: Path, component: str, version: str, *, size: int = 0, healthy: bool = True
) -> ArtifactRef:
    """Write a demo tarball (VERSION, bin/healthcheck, `size` bytes of payload) into the store.

    The bytes depend only on the arguments, so the sha256 is stable across rebuilds.
    """
    path = artifact_path(store, component, version)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, mode in _demo_members(component, version, size=size, healthy=healthy):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, _MTIME
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as out, gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    os.replace(tmp, path)
    return ArtifactRef(url=path.absolute().as_uri(), sha256=sha256_file(path), path=path)


def _demo_members(
    component: str, version: str, *, size: int, healthy: bool
) -> Iterator[tuple[str, bytes, int]]:
    yield "VERSION", f"{version}\n".encode(), 0o644
    meta = {"component": component, "version": version}
    yield "component.json", json.dumps(meta).encode(), 0o644
    yield "bin/healthcheck", (_HEALTHCHECK if healthy else _UNHEALTHY).encode(), 0o755
    if size > 0:
        # Incompressible, deterministic payload: artifacts of realistic size for benchmarks.
        rng = random.Random(f"{component}=={version}")
        yield "payload.bin", rng.randbytes(size), 0o644


def build_demo_artifacts(fleet_file: Path, out: Path, *, size: int = 0) -> list[ArtifactRef]:
    """Build an artifact for every `versions[]` entry of `fleet_file` and record it there.

    Each entry's `artifact` becomes `{url: file://..., sha256: ...}`; the file is
    rewritten in place (YAML, or JSON when it ends in `.json`).
    """
    try:
        document = yaml.safe_load(fleet_file.read_text())
    except OSError as exc:
        raise InputError(f"Cannot read fleet file {str(fleet_file)!r}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise FleetFileError([f"{fleet_file}: not valid YAML: {exc}"]) from None
    entries = _version_entries(fleet_file, document)
    refs = []
    for entry in entries:
        ref = build_demo_artifact(out, str(entry["component"]), str(entry["version"]), size=size)
        entry["artifact"] = ref.to_fleet_file()
        refs.append(ref)
    tmp = fleet_file.with_name(fleet_file.name + ".tmp")
    if fleet_file.suffix == ".json":
        tmp.write_text(json.dumps(document, indent=2, default=str) + "\n")
    else:
        tmp.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    os.replace(tmp, fleet_file)
    return refs


def _version_entries(fleet_file: Path, document: Any) -> list[dict[str, Any]]:
    if not isinstance(document, dict):
        raise FleetFileError([f"{fleet_file}: expected a mapping at the top level"])
    versions = document.get("versions")
    if not isinstance(versions, list):
        raise FleetFileError([f"{fleet_file}: versions: expected a list, got {versions!r}"])
    problems = []
    for i, entry in enumerate(versions):
        if not isinstance(entry, dict) or "component" not in entry or "version" not in entry:
            problems.append(f"versions[{i}]: expected a mapping with component and version")
            continue
        try:
            artifact_path(Path("."), str(entry["component"]), str(entry["version"]))
        except InputError as exc:
            problems.append(f"versions[{i}]: {exc}")
    if problems:
        raise FleetFileError(problems)
    return versions
