"""Write one benchmark's section of docs/benchmarks.md, leaving the others alone."""

from __future__ import annotations

import platform
from datetime import UTC, datetime
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
HEADER = (
    "# Benchmarks\n\n"
    "Measured on the project's reference machine (2 cores); each section says how to "
    "reproduce it. Every figure below is the output of the named command, not an estimate.\n"
)


def write_section(title: str, lines: list[str]) -> None:
    """Replace (or append) the section `## {title}` with `lines`."""
    text = DOC.read_text() if DOC.exists() else HEADER
    stamp = (
        f"_Last run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Python "
        f"{platform.python_version()}, {platform.machine()}._"
    )
    body = f"## {title}\n\n" + "\n".join([*lines, "", stamp]) + "\n"
    start = text.find(f"## {title}\n")
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + body
    else:
        end = text.find("\n## ", start + 1)
        text = text[:start] + body + ("" if end == -1 else text[end + 1 :])
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)
