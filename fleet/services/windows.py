"""The auto-update instances whose maintenance window is open now."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

from fleet.core.windows import WindowSelection, auto_update_selection
from fleet.db import fleet as fleet_repo
from fleet.services._common import now_or_clock, reading

__all__ = ["open_windows"]


def open_windows(*, now: datetime | None = None, engine: Engine | None = None) -> WindowSelection:
    """Split the auto-update instances by whether their window is open at `now`."""
    now = now_or_clock(now)
    with reading(engine) as session:
        state = fleet_repo.load_state(session)
    return auto_update_selection(state, now)
