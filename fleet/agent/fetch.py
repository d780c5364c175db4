"""Download an artifact (path, file:// or http(s)://) and verify its sha256 on the way."""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx

from fleet.agent.errors import ArtifactError, ChecksumMismatch

__all__ = ["fetch_artifact"]

_CHUNK = 1 << 20
DEFAULT_MAX_BYTES = 4 << 30


def fetch_artifact(
    url: str,
    dest: Path,
    *,
    sha256: str,
    client: httpx.Client | None = None,
    timeout: float = 30.0,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> None:
    """Copy the artifact at `url` to `dest`; raise unless its sha256 is `sha256`."""
    parts = urlsplit(url)
    digest = hashlib.sha256()
    if parts.scheme in ("http", "https"):
        _fetch_http(url, dest, digest, client=client, timeout=timeout, max_bytes=max_bytes)
    elif parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ArtifactError(f"Unsupported file URL host in {url!r} (only local files)")
        _copy_file(url, Path(unquote(parts.path)), dest, digest, max_bytes=max_bytes)
    elif parts.scheme == "" and url.startswith("/"):
        _copy_file(url, Path(url), dest, digest, max_bytes=max_bytes)
    else:
        raise ArtifactError(
            f"Unsupported artifact URL {url!r} (use an absolute path, file://, http(s)://)"
        )
    got = digest.hexdigest()
    if got != sha256:
        raise ChecksumMismatch(f"Checksum mismatch for {url!r}: expected {sha256}, got {got}")


def _copy_file(url: str, src: Path, dest: Path, digest: hashlib._Hash, *, max_bytes: int) -> None:
    try:
        with src.open("rb") as fin, dest.open("wb") as fout:
            total = 0
            while chunk := fin.read(_CHUNK):
                total += len(chunk)
                if total > max_bytes:
                    raise ArtifactError(f"Artifact {url!r} is larger than {max_bytes} bytes")
                digest.update(chunk)
                fout.write(chunk)
    except IsADirectoryError:
        raise ArtifactError(f"Artifact {url!r} is a directory, not an archive") from None
    except FileNotFoundError:
        raise ArtifactError(f"Artifact not found: {url!r}") from None
    except PermissionError:
        raise ArtifactError(f"Artifact not readable: {url!r}") from None


def _fetch_http(
    url: str,
    dest: Path,
    digest: hashlib._Hash,
    *,
    client: httpx.Client | None,
    timeout: float,
    max_bytes: int,
) -> None:
    own = client is None
    http = client if client is not None else httpx.Client(timeout=timeout, follow_redirects=True)
    try:
        with http.stream("GET", url) as response:
            if response.status_code >= 400:
                raise ArtifactError(
                    f"Artifact {url!r} could not be fetched: HTTP {response.status_code}"
                )
            total = 0
            with dest.open("wb") as fout:
                for chunk in response.iter_bytes(_CHUNK):
                    total += len(chunk)
                    if total > max_bytes:
                        raise ArtifactError(f"Artifact {url!r} is larger than {max_bytes} bytes")
                    digest.update(chunk)
                    fout.write(chunk)
    except httpx.HTTPError as exc:
        raise ArtifactError(f"Artifact unreachable: {url!r} ({type(exc).__name__}: {exc})") from exc
    finally:
        if own:
            http.close()
