"""Names of components, channels and instances (they become directory names)."""

from __future__ import annotations

import re

from fleet.core.errors import InvalidName

__all__ = ["NAME_PATTERN", "validate_name"]

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


def validate_name(name: str, *, kind: str | None = None) -> str:
    """Return `name` when it is a valid Fleet name, else raise `InvalidName`.

    >>> validate_name("acme-prod")
    'acme-prod'
    """
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        what = f"{kind} name" if kind else "name"
        raise InvalidName(f"Invalid {what}: {name!r} (expected ^[a-z][a-z0-9-]{{0,62}}$)")
    return name
