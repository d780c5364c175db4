"""The fleet matrix: one row per instance, one cell per component, each cell in
one state, and the advisory badges of the row.

The facts come from the services (`fleet.services.overview`); this module
only decides how a cell is shown. A cell takes the first state that holds,
in this order (the one that asks most of an operator first):

1. `error`: the instance cannot be planned, or its last deploy of this
   component failed;
2. `drifted`: the last drift check found this component running something
   else than Fleet recorded;
3. `enforced`: an enforced security fix moves this component now;
4. `waiting`: a paused run waits for approval to change it;
5. `frozen`: a newer version is held back because the instance is frozen;
6. `update`: the plan would change it (deploy, or manual approval to come);
7. `current`: it runs what the plan wants.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from fleet.services.overview import Overview

__all__ = [
    "STATE_WORDS",
    "Badge",
    "Cell",
    "CellState",
    "Filters",
    "Row",
    "build_rows",
    "choices",
    "filter_rows",
    "rows_of",
    "state_counts",
    "time_left",
]


def time_left(deadline: datetime | None, now: datetime) -> str:
    """`13d 6h`, `overdue 4h 10m`, `45m`: the two largest units, rounded down (for
    people: the deadline itself is the advisory's, `fleet.core.advisories.deadline_of`)."""
    if deadline is None:
        return ""
    seconds = int((deadline - now).total_seconds())
    late = seconds < 0
    minutes = abs(seconds) // 60
    parts = [(minutes // 1440, "d"), (minutes // 60 % 24, "h"), (minutes % 60, "m")]
    first = next((i for i, (n, _) in enumerate(parts) if n), len(parts) - 1)
    words = " ".join(f"{n}{u}" for n, u in parts[first : first + 2] if n) or "0m"
    return f"overdue {words}" if late else words


class CellState(StrEnum):
    ERROR = "error"
    DRIFTED = "drifted"
    ENFORCED = "enforced"
    WAITING = "waiting"
    FROZEN = "frozen"
    UPDATE = "update"
    CURRENT = "current"


STATE_WORDS: Mapping[CellState, str] = {
    CellState.CURRENT: "current",
    CellState.UPDATE: "update available",
    CellState.WAITING: "waiting for approval",
    CellState.ENFORCED: "enforced fix pending",
    CellState.FROZEN: "frozen",
    CellState.ERROR: "error",
    CellState.DRIFTED: "drifted",
}


@dataclass(frozen=True, slots=True)
class Cell:
    component: str
    running: str | None
    target: str | None
    state: CellState
    note: str = ""
    flagged: bool = False  # an open advisory affects what runs here
    # Worked out once: the matrix draws thousands of cells.
    css: str = field(init=False, default="")
    tip: str = field(init=False, default="")

    def __post_init__(self) -> None:
        css = f"st-{self.state.value}" + (" flag" if self.flagged else "")
        object.__setattr__(self, "css", css)
        object.__setattr__(self, "tip", self.title if self._tells_more else "")

    @property
    def _tells_more(self) -> bool:
        """Whether a tooltip says more than the cell's colour, version and target."""
        return bool(self.note) or self.state not in (CellState.CURRENT, CellState.UPDATE)

    @property
    def title(self) -> str:
        words = STATE_WORDS[self.state]
        if self.target and self.target != self.running and self.state is not CellState.CURRENT:
            words += f": {self.running or '(none)'} -> {self.target}"
        return f"{words} ({self.note})" if self.note else words


@dataclass(frozen=True, slots=True)
class Badge:
    """An advisory affecting what an instance runs, with the time left to its deadline."""

    advisory: str
    component: str
    severity: str
    deadline: datetime | None
    enforced: bool
    accepted: str | None = None
    status: str | None = None  # e.g. `no-fix`, when the plan says so

    def overdue(self, now: datetime) -> bool:
        return self.deadline is not None and self.deadline <= now

    def words(self, now: datetime) -> str:
        """`FLEET-2026-0007 · critical · 5h 10m left` (the time left is read at `now`)."""
        parts = [self.advisory, self.severity]
        left = time_left(self.deadline, now)
        if self.accepted:
            parts.append(f"accepted until {self.accepted}")
        elif left:
            parts.append(left if self.overdue(now) else f"{left} left")
        if self.status:
            parts.append(self.status)
        return " · ".join(parts)


@dataclass(frozen=True, slots=True)
class Row:
    instance: str
    customer: str
    channel: str
    policy: str
    decision: str
    labels: Mapping[str, str]
    cells: tuple[Cell, ...]
    badges: tuple[Badge, ...] = ()
    waiting_run: str | None = None
    problem: str = ""

    @property
    def states(self) -> frozenset[CellState]:
        return frozenset(c.state for c in self.cells)


@dataclass(frozen=True, slots=True)
class Filters:
    channel: str = ""
    customer: str = ""
    label: str = ""
    state: str = ""
    q: str = ""

    def active(self) -> bool:
        return any((self.channel, self.customer, self.label, self.state, self.q))

    def query(self) -> dict[str, str]:
        """The filters as query parameters (the ones set)."""
        pairs = {
            "channel": self.channel,
            "customer": self.customer,
            "label": self.label,
            "state": self.state,
            "q": self.q,
        }
        return {k: v for k, v in pairs.items() if v}


def _badge(flag: Mapping[str, Any]) -> Badge:
    deadline = flag.get("deadline")
    moment = datetime.fromisoformat(deadline.replace("Z", "+00:00")) if deadline else None
    accepted = flag.get("risk_accepted") or None
    status = "no fix available" if flag.get("no_fix") else flag.get("status")
    return Badge(
        advisory=str(flag.get("id", "")),
        component=str(flag.get("component", "")),
        severity=str(flag.get("severity", "")),
        deadline=moment,
        enforced=bool(flag.get("enforced")),
        accepted=None if not accepted else str(accepted.get("until", ""))[:10],
        status=None if status is None else str(status),
    )


def _cell(
    component: str,
    plan: Mapping[str, Any] | None,
    item: Mapping[str, Any],
    *,
    running: str | None,
    drifted: Mapping[str, tuple[str | None, str | None]] | None,
    failed: tuple[int, str, str | None] | None,
    waiting: bool,
    enforced: bool,
    flagged: bool,
) -> Cell:
    target = None if plan is None else plan.get("to")
    # The reasons are on the instance page: here they would triple the page's size.
    changes = target is not None and target != running
    decision = item.get("decision")
    if decision == "error":
        errors = "; ".join(str(e) for e in item.get("errors", ())) or "cannot be planned"
        return Cell(component, running, None, CellState.ERROR, errors, flagged)
    if failed is not None:
        revision, outcome, error = failed
        note = f"deploy of r{revision} {outcome}" + (f": {error}" if error else "")
        return Cell(component, running, target, CellState.ERROR, note, flagged)
    if drifted is not None:
        recorded, seen = drifted.get(component, (None, None))
        note = f"recorded {recorded or '(none)'}, running {seen or '(none)'}"
        return Cell(component, seen or running, target, CellState.DRIFTED, note, flagged)
    if changes and decision == "enforce-security" and enforced:
        return Cell(component, running, target, CellState.ENFORCED, "", flagged)
    if changes and waiting:
        return Cell(component, running, target, CellState.WAITING, "", flagged)
    if changes and decision == "skip-frozen":
        return Cell(component, running, target, CellState.FROZEN, "", flagged)
    if changes:
        return Cell(component, running, target, CellState.UPDATE, "", flagged)
    return Cell(component, running, target, CellState.CURRENT, "", flagged)


# The key names the plan and state by identity: the entry keeps them alive.
_ROWS: dict[str, tuple[tuple[Any, ...], list[Row], Overview]] = {}
_ROWS_LOCK = threading.Lock()


def _facts_key(overview: Overview) -> tuple[Any, ...]:
    return (
        id(overview.plan),
        id(overview.state),
        overview.planned_at,
        None if overview.waiting is None else tuple(sorted(overview.waiting.items())),
        tuple(sorted((n, d.observed_at, d.summary) for n, d in overview.drifted.items())),
        tuple(sorted((n, f.revision, f.outcome) for n, f in overview.failed.items())),
    )


def rows_of(overview: Overview) -> list[Row]:
    """`build_rows`, kept while the facts are the same (the plan is kept for its
    minute): paging through a large fleet does not build every row again."""
    key = _facts_key(overview)
    with _ROWS_LOCK:
        hit = _ROWS.get("rows")
    if hit is not None and hit[0] == key:
        return hit[1]
    rows = build_rows(overview)
    with _ROWS_LOCK:
        _ROWS["rows"] = (key, rows, overview)
    return rows


def build_rows(overview: Overview, components: Sequence[str] | None = None) -> list[Row]:
    """The matrix rows of the whole fleet, in fleet order."""
    state = overview.state
    order = tuple(components or state.components)
    instances = {i.name: i for i in state.instances}
    rows = []
    for item in overview.plan.get("instances", ()):
        name = str(item.get("instance"))
        inst = instances.get(name)
        planned: Mapping[str, Any] = item.get("components") or {}
        # The advisories that affect what runs now (the plan also names those that
        # would affect only the version it plans).
        flags = [
            f
            for f in item.get("advisories", ())
            if isinstance(f, Mapping) and f.get("running", True)
        ]
        badges = tuple(_badge(f) for f in flags)
        enforced_components = {
            str(f.get("component"))
            for f in flags
            if f.get("enforced") and not f.get("risk_accepted")
        }
        open_components = {str(f.get("component")) for f in flags if not f.get("risk_accepted")}
        waiting = (overview.waiting or {}).get(name)
        drift = overview.drifted.get(name)
        drift_map = None
        if drift is not None:
            drift_map = {c: (r, s) for c, r, s in drift.differences}
        failed = overview.failed.get(name)
        cells = []
        for component in order:
            plan = planned.get(component)
            running = None
            if plan is not None and plan.get("from") is not None:
                running = str(plan["from"])
            elif inst is not None and component in inst.current:
                running = str(inst.current[component])
            drifted_here = None
            if drift_map is not None and (component in drift_map or not drift_map):
                drifted_here = drift_map
            failed_here = None
            if failed is not None and component in failed.components:
                failed_here = (failed.revision, failed.outcome, failed.error)
            cells.append(
                _cell(
                    component,
                    plan,
                    item,
                    running=running,
                    drifted=drifted_here,
                    failed=failed_here,
                    waiting=waiting is not None,
                    enforced=component in enforced_components,
                    flagged=component in open_components,
                )
            )
        problem = ""
        if item.get("decision") == "error":
            problem = "; ".join(str(e) for e in item.get("errors", ()))
        elif drift is not None:
            problem = f"drift: {drift.summary}"
        elif failed is not None:
            problem = f"last deploy r{failed.revision} {failed.outcome}"
        rows.append(
            Row(
                instance=name,
                customer="" if inst is None else inst.customer,
                channel=str(item.get("channel", "")),
                policy=str(item.get("policy", "")),
                decision=str(item.get("decision", "")),
                labels={} if inst is None else dict(inst.labels),
                cells=tuple(cells),
                badges=badges,
                waiting_run=None if waiting is None else waiting[0],
                problem=problem,
            )
        )
    return rows


def _label(text: str) -> tuple[str, str | None]:
    key, sep, value = text.partition("=")
    return key.strip(), value.strip() if sep else None


def filter_rows(rows: Iterable[Row], filters: Filters) -> list[Row]:
    """Rows that meet every filter: channel, customer and state exactly, label as
    `key=value` (or just `key`), and `q` as part of the instance's name."""
    key, value = _label(filters.label) if filters.label else ("", None)
    customer = filters.customer.casefold()
    q = filters.q.strip().casefold()
    out = []
    for row in rows:
        if filters.channel and row.channel != filters.channel:
            continue
        if customer and row.customer.casefold() != customer:
            continue
        if key and (key not in row.labels or (value is not None and row.labels[key] != value)):
            continue
        if filters.state and filters.state not in {s.value for s in row.states}:
            continue
        if q and q not in row.instance:
            continue
        out.append(row)
    return out


def state_counts(rows: Iterable[Row]) -> dict[CellState, int]:
    """How many cells are in each state (for the legend)."""
    counts = dict.fromkeys(CellState, 0)
    for row in rows:
        for cell in row.cells:
            counts[cell.state] += 1
    return counts


def choices(rows: Sequence[Row]) -> dict[str, list[str]]:
    """The values the filters offer: channels, customers, labels."""
    channels = sorted({r.channel for r in rows})
    customers = sorted({r.customer for r in rows}, key=str.casefold)
    labels = sorted({f"{k}={v}" for r in rows for k, v in r.labels.items()})
    return {"channels": channels, "customers": customers, "labels": labels}
