"""Free text from outside (reasons, comments, summaries): bounded and storable.

Every free-text field has a limit in UTF-8 bytes, and no text may hold what a
database cannot store: a lone surrogate (JSON's `"\\ud800"` decodes to one) or
a NUL character. `find_unstorable` finds such strings anywhere in a parsed
document, so that one bad value is refused before anything is written.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from fleet.core.errors import InputError

__all__ = [
    "REASON_LIMIT",
    "SUMMARY_LIMIT",
    "TEXT_LIMIT",
    "check_text",
    "find_unstorable",
    "unstorable",
]

REASON_LIMIT = 4096
"""Reasons (pins, yanks, rollbacks, risk acceptances) and approval comments."""
SUMMARY_LIMIT = 4096
"""An advisory's one-line summary."""
TEXT_LIMIT = 1024
"""Customer names, labels, targets, ids and other short text."""


def _shown(value: str) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def unstorable(value: str) -> str | None:
    """Why `value` cannot be stored as text, or None when it can.

    >>> unstorable("\\ud800")
    'a lone surrogate is not text'
    """
    if "\x00" in value:
        return "a NUL character is not text"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "a lone surrogate is not text"
    return None


def check_text(value: str, *, what: str, limit: int = REASON_LIMIT, required: bool = True) -> str:
    """`value` when it is storable text of at most `limit` UTF-8 bytes.

    >>> check_text("3.x migration not ready", what="pin reason")
    '3.x migration not ready'
    """
    problem = unstorable(value)
    if problem is not None:
        raise InputError(f"Invalid {what}: {_shown(value)} ({problem})")
    size = len(value.encode("utf-8"))
    if size > limit:
        raise InputError(
            f"Invalid {what}: {_shown(value)} is {size} bytes long (at most {limit} bytes)"
        )
    if required and not value.strip():
        raise InputError(f"Invalid {what}: {value!r} (must not be empty)")
    return value


def find_unstorable(data: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """Each `(where, why)` of a string (key or value) in `data` that cannot be stored.

    >>> list(find_unstorable({"pins": [{"reason": "\\ud800"}]}))
    [('pins[0].reason', 'a lone surrogate is not text')]
    """
    seen: set[int] = set()
    stack: list[tuple[str, Any]] = [(where, data)]
    while stack:
        at, value = stack.pop()
        if isinstance(value, str):
            problem = unstorable(value)
            if problem is not None:
                yield at or "value", problem
        elif isinstance(value, Mapping | list | tuple):
            if id(value) in seen:  # YAML aliases share one object: check it once
                continue
            seen.add(id(value))
            if isinstance(value, Mapping):
                for key, item in reversed(list(value.items())):
                    name = f"{at}.{key}" if at else str(key)
                    if isinstance(key, str) and unstorable(key) is not None:
                        yield at or "value", f"key {_shown(key)}: {unstorable(key)}"
                        continue
                    stack.append((name, item))
            else:
                for index in reversed(range(len(value))):
                    stack.append((f"{at}[{index}]", value[index]))
