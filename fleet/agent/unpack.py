"""Unpack a release archive, refusing any member that would land outside the directory."""

from __future__ import annotations

import posixpath
import tarfile
from pathlib import Path

from fleet.agent.errors import ArtifactError, UnsafeArchive

__all__ = ["unpack_archive"]


def unpack_archive(archive: Path, dest: Path, *, label: str) -> None:
    """Extract the tar archive `archive` into `dest` (created), checking every member first.

    Nothing is extracted when any member is unsafe: absolute names, `..`, links
    pointing outside `dest`, devices and fifos.
    """
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, label)
            dest.mkdir(parents=True, exist_ok=False)
            # The data filter re-checks at extraction time (links through links, modes).
            tar.extractall(dest, members=members, filter="data")
    except tarfile.FilterError as exc:
        raise UnsafeArchive(f"Unsafe member in {label} archive: {exc}") from None
    except tarfile.TarError as exc:
        raise ArtifactError(f"Artifact for {label} is not a readable tar archive: {exc}") from None


def _check_member(member: tarfile.TarInfo, label: str) -> None:
    name = member.name
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchive(f"Unsafe member in {label} archive: absolute path {name!r}")
    if ".." in name.replace("\\", "/").split("/"):
        raise UnsafeArchive(f"Unsafe member in {label} archive: {name!r} contains '..'")
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise UnsafeArchive(f"Unsafe member in {label} archive: {name!r} is a device or fifo")
    if member.issym() or member.islnk():
        target = member.linkname
        if target.startswith("/"):
            raise UnsafeArchive(
                f"Unsafe member in {label} archive: link {name!r} points to absolute {target!r}"
            )
        base = posixpath.dirname(name) if member.issym() else ""
        resolved = posixpath.normpath(posixpath.join(base, target))
        if resolved == ".." or resolved.startswith("../"):
            raise UnsafeArchive(
                f"Unsafe member in {label} archive: link {name!r} -> {target!r} leaves the release"
            )
