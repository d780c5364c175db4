"""Component versions and the version registry.

Versions are `packaging.version.Version` (PEP 440: `2.4.0-rc.1` reads as
`2.4.0rc1`), constraints are `packaging.specifiers.SpecifierSet`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

from packaging.specifiers import InvalidSpecifier as _PkgInvalidSpecifier
from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion as _PkgInvalidVersion
from packaging.version import Version

from fleet.core.errors import InvalidSpecifier, InvalidVersion, NotFoundError

__all__ = [
    "ComponentVersion",
    "Registry",
    "parse_specifier",
    "parse_version",
    "release_line",
]


def parse_version(text: str | Version) -> Version:
    """Read a PEP 440 version, normalising common spellings.

    >>> parse_version("2.4.0-rc.1")
    <Version('2.4.0rc1')>
    """
    if isinstance(text, Version):
        return text
    try:
        return _version(str(text))
    except _PkgInvalidVersion as exc:
        raise InvalidVersion(f"Invalid version: {text!r} (not PEP 440)") from exc


# A fleet names a few thousand distinct versions tens of thousands of times;
# versions are immutable, so equal texts may share one parsed object.
_version = lru_cache(maxsize=1 << 16)(Version)


def parse_specifier(text: str | SpecifierSet) -> SpecifierSet:
    """Read a version constraint such as `>=2.4,<3` or `==2.3.*`.

    >>> str(parse_specifier(">=2.4, <3"))
    '<3,>=2.4'
    """
    if isinstance(text, SpecifierSet):
        return text
    try:
        return SpecifierSet(str(text))
    except _PkgInvalidSpecifier as exc:
        raise InvalidSpecifier(f"Invalid version specifier: {text!r}") from exc


def release_line(version: Version) -> tuple[int, int]:
    """The major.minor a version belongs to ("same release line").

    >>> release_line(Version("2.3.7"))
    (2, 3)
    """
    release = (*version.release, 0)
    return release[0], release[1]


@dataclass(frozen=True, slots=True)
class ComponentVersion:
    """One published version of one component."""

    component: str
    version: Version
    released_at: datetime
    artifact_url: str | None = None
    sha256: str | None = None
    requires: Mapping[str, SpecifierSet] = field(default_factory=dict)
    yanked: bool = False
    yanked_reason: str | None = None


class Registry:
    """The versions of every component, newest first, with fast look-ups.

    >>> r = Registry([ComponentVersion("api", Version("1.0"), now)])
    >>> r.get("api", Version("1.0")).component
    'api'
    """

    __slots__ = ("_by_component", "_index")

    def __init__(self, versions: Iterable[ComponentVersion]) -> None:
        by_component: dict[str, list[ComponentVersion]] = {}
        index: dict[tuple[str, Version], ComponentVersion] = {}
        for cv in versions:
            by_component.setdefault(cv.component, []).append(cv)
            index[(cv.component, cv.version)] = cv
        for items in by_component.values():
            items.sort(key=lambda cv: cv.version, reverse=True)
        self._by_component = {name: tuple(items) for name, items in by_component.items()}
        self._index = index

    def versions(self, component: str) -> tuple[ComponentVersion, ...]:
        """Every version of `component`, newest first (yanked included)."""
        return self._by_component.get(component, ())

    def find(self, component: str, version: Version) -> ComponentVersion | None:
        return self._index.get((component, version))

    def get(self, component: str, version: Version) -> ComponentVersion:
        found = self._index.get((component, version))
        if found is None:
            raise NotFoundError(f"Unknown version: {component} {str(version)!r}")
        return found

    def components(self) -> tuple[str, ...]:
        return tuple(self._by_component)

    def __iter__(self) -> Iterator[ComponentVersion]:
        for items in self._by_component.values():
            yield from items

    def __len__(self) -> int:
        return len(self._index)
