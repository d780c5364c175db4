"""Reading a fleet file from disk for the commands that take `FILE`."""

from __future__ import annotations

from pathlib import Path

from fleet.core.errors import InputError
from fleet.core.fleetfile import FleetFile, parse_fleet_text

__all__ = ["load_fleet_file"]


def load_fleet_file(path: str | Path) -> FleetFile:
    """Read and validate a fleet file (YAML or JSON, told apart by its content).

    Raises `InputError` naming the path when it cannot be read and
    `FleetFileError` listing every problem when it is not a valid fleet file.

    >>> load_fleet_file("examples/fleet.yaml").components
    ['api', 'web', 'worker', 'migrations']
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"No such fleet file: {str(path)!r}") from None
    except IsADirectoryError:
        raise InputError(f"Not a fleet file but a directory: {str(path)!r}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"Fleet file {str(path)!r} is not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise InputError(f"Cannot read fleet file {str(path)!r}: {exc.strerror}") from exc
    return parse_fleet_text(text)
