"""Starting a rollback run: the checks every caller makes first (the REST API, the
console), then the `rollback/fleet` deployment through Prefect.

The security floor itself is the rollback flow's (`fleet.core.rollback`):
a target with an enforced advisory is refused there unless the run carries a
risk acceptance. Accepting a risk needs the admin role, and the acceptance
is always the caller's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from fleet.core.durations import check_instant, isoformat
from fleet.core.errors import InputError, PermissionDenied
from fleet.core.rollback import RollbackTarget
from fleet.core.text import check_text
from fleet.services import plans, runs
from fleet.services.tokens import Principal, Role

__all__ = ["start_rollback"]


def start_rollback(
    instances: Sequence[str],
    *,
    target: str,
    reason: str,
    principal: Principal,
    risk_reason: str | None = None,
    risk_until: datetime | None = None,
    engine: Engine | None = None,
) -> dict[str, Any]:
    """Start `rollback/fleet` for `instances` as `principal` (the requester); returns
    the scheduled run. A risk acceptance (`risk_reason`, `risk_until`) needs admin."""
    RollbackTarget.parse(target)
    if not reason.strip():
        raise InputError(f"Invalid rollback reason: {reason!r} (say why)")
    check_text(reason, what="rollback reason")
    if not instances:
        raise InputError("Invalid rollback: no instance given")
    plans.check_selection(instances=instances, engine=engine)
    parameters: dict[str, Any] = {
        "instances": list(dict.fromkeys(instances)),
        "target": target,
        "reason": reason,
        "requested_by": principal.name,
    }
    if risk_reason is not None or risk_until is not None:
        if not principal.can(Role.ADMIN):
            raise PermissionDenied(
                f"A risk acceptance needs the admin role; {principal.name!r} is "
                f"{principal.role.value!r}"
            )
        if risk_until is None or not (risk_reason or "").strip():
            raise InputError(
                f"Invalid risk acceptance: reason {risk_reason!r}, until {risk_until!r} "
                "(both are needed)"
            )
        check_text(risk_reason or "", what="risk acceptance reason")
        parameters["risk_acceptance"] = {
            "by": principal.name,
            "reason": risk_reason,
            "until": isoformat(check_instant(risk_until, what="risk acceptance end")),
        }
    return runs.start_run(runs.ROLLBACK, parameters)
