"""The console's forms: `application/x-www-form-urlencoded` bodies, read with the
standard library (the forms have no file uploads), size-limited and strict
about their encoding."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from fastapi import Request

from fleet.core.errors import InputError

__all__ = ["MAX_BODY", "Form", "read_form"]

MAX_BODY = 64 * 1024
MAX_FIELDS = 1100  # an approval names at most the instances a run waits for


@dataclass(frozen=True, slots=True)
class Form:
    """Field name -> values, in the order sent."""

    fields: dict[str, list[str]] = field(default_factory=dict)

    def get(self, name: str, default: str = "") -> str:
        values = self.fields.get(name)
        return values[-1] if values else default

    def all(self, name: str) -> list[str]:
        return list(self.fields.get(name, ()))

    def __contains__(self, name: str) -> bool:
        return name in self.fields


async def read_form(request: Request) -> Form:
    """The request's form; bad input (too big, not a form, not UTF-8) is an `InputError`."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise InputError(f"Invalid form: content type {kind!r} (expected a url-encoded form)")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise InputError(f"Invalid form: more than {MAX_BODY} bytes")
    try:
        text = body.decode("ascii")
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=False,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"Invalid form: {exc}") from None
    fields: dict[str, list[str]] = {}
    for key, value in pairs:
        fields.setdefault(key, []).append(value)
    return Form(fields)
