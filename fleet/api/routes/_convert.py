"""Conversions the routers share: fleet-file entries from bodies, page slices."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from fleet.api.deps import Paging
from fleet.core.errors import InputError

__all__ = ["entry", "page"]

M = TypeVar("M", bound=BaseModel)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def entry(model: type[M], data: Mapping[str, Any]) -> M:
    """A fleet-file entry from request data; its rules' errors become `InputError`."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in e['loc']) or model.__name__}: {e['msg']}"
            + (f" (given {_short(e['input'])})" if e.get("input") is not None and e["loc"] else "")
            for e in exc.errors()
        ]
        raise InputError("; ".join(problems)) from None


def page(items: Sequence[Any], paging: Paging) -> dict[str, Any]:
    return {
        "items": list(items[paging.offset : paging.offset + paging.limit]),
        "total": len(items),
        "limit": paging.limit,
        "offset": paging.offset,
    }
