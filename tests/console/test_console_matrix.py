"""How the matrix words time left and filters rows (no database needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fleet.console.matrix import Cell, CellState, Filters, Row, filter_rows, time_left

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("delta", "words"),
    [
        (None, ""),
        (timedelta(0), "0m"),
        (timedelta(seconds=59), "0m"),
        (timedelta(minutes=45), "45m"),
        (timedelta(hours=4), "4h"),
        (timedelta(hours=4, minutes=10, seconds=59), "4h 10m"),
        (timedelta(days=13, hours=6, minutes=59), "13d 6h"),
        (timedelta(days=2, minutes=5), "2d"),
        (-timedelta(hours=4), "overdue 4h"),
        (-timedelta(days=4, hours=11, minutes=3), "overdue 4d 11h"),
        (timedelta(days=3650), "3650d"),
    ],
)
def test_time_left(delta: timedelta | None, words: str) -> None:
    assert time_left(None if delta is None else NOW + delta, NOW) == words


def row(name: str, channel: str, customer: str, labels: dict[str, str], *states: CellState) -> Row:
    cells = tuple(Cell(f"c{i}", "1.0", "1.0", s) for i, s in enumerate(states))
    return Row(name, customer, channel, "auto-update", "noop", labels, cells)


ROWS = [
    row("acme-prod", "stable", "Acme", {"region": "eu"}, CellState.CURRENT),
    row("acme-dr", "lts", "Acme", {"region": "us"}, CellState.CURRENT, CellState.WAITING),
    row("initech", "lts", "Initech Ltd", {"region": "us", "tier": "gold"}, CellState.ERROR),
]


@pytest.mark.parametrize(
    ("filters", "names"),
    [
        (Filters(), ["acme-prod", "acme-dr", "initech"]),
        (Filters(channel="lts"), ["acme-dr", "initech"]),
        (Filters(customer="ACME"), ["acme-prod", "acme-dr"]),  # case does not matter
        (Filters(customer="Acme "), []),  # exact otherwise
        (Filters(label="region=us"), ["acme-dr", "initech"]),
        (Filters(label="tier"), ["initech"]),
        (Filters(label="region="), []),
        (Filters(label="=us"), ["acme-prod", "acme-dr", "initech"]),  # no key: no filter
        (Filters(state="waiting"), ["acme-dr"]),
        (Filters(state="nonsense"), []),
        (Filters(q="ACME"), ["acme-prod", "acme-dr"]),
        (Filters(q="acme\u200b"), []),
        (Filters(channel="lts", state="error", q="init"), ["initech"]),
    ],
)
def test_filters(filters: Filters, names: list[str]) -> None:
    assert [r.instance for r in filter_rows(ROWS, filters)] == names
