"""Advisories from OSV JSON, and risk acceptances.

`import_osv` maps each record's `affected[].package.name` to a component
(`component_map`) and upserts by advisory id and component: re-importing a
modified record updates it, an unchanged one writes nothing. A package that
no mapping names, or a mapping to a component the fleet does not have,
refuses the whole import.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, insert, select, update

from fleet.core.advisories import Advisory, Severity
from fleet.core.durations import check_instant, isoformat
from fleet.core.errors import InputError, NotFoundError
from fleet.core.identity import check_identity
from fleet.core.osv import advisories_from_osv
from fleet.core.text import check_text
from fleet.db import fleet as repo
from fleet.db.audit import Entry, append_events
from fleet.services._common import now_or_clock, writing

__all__ = ["ImportResult", "accept_risk", "check_acceptance", "import_osv"]


@dataclass(frozen=True, slots=True)
class ImportResult:
    created: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()

    def summary(self) -> str:
        return (
            f"{len(self.created)} created, {len(self.updated)} updated, "
            f"{len(self.unchanged)} unchanged"
        )


def _values(advisory: Advisory) -> dict[str, Any]:
    return {
        "advisory_id": advisory.id,
        "component": advisory.component,
        "severity": advisory.severity.value,
        "published_at": advisory.published_at,
        "aliases": list(advisory.aliases),
        "summary": advisory.summary,
        "ranges": [dict(r.raw) for r in advisory.ranges],
        "versions": [str(v) for v in sorted(advisory.versions)],
    }


def _comparable(values: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: isoformat(v) if isinstance(v, datetime) else v for k, v in values.items() if k != "id"
    }


def import_osv(
    data: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    component_map: Mapping[str, str],
    *,
    actor: str,
    default_severity: Severity | None = None,
    now: datetime | None = None,
    engine: Engine | None = None,
) -> ImportResult:
    """Store the advisories of one OSV record, a list of them or an OSV API answer."""
    now = now_or_clock(now)
    actor = check_identity(actor, kind="actor")
    advisories = advisories_from_osv(data, component_map, default_severity=default_severity)
    with writing(engine) as session:
        components = set(session.execute(select(repo.COMPONENT.c.name)).scalars())
        for advisory in advisories:
            if advisory.component not in components:
                package = next(
                    (p for p, c in component_map.items() if c == advisory.component),
                    advisory.component,
                )
                raise InputError(
                    f"Unknown component: {advisory.component!r} (mapped from OSV package "
                    f"{package!r} in {advisory.id}); known: {', '.join(sorted(components))}"
                )
        created: list[str] = []
        updated: list[str] = []
        unchanged: list[str] = []
        entries: list[Entry] = []
        for advisory in advisories:
            values = _values(advisory)
            row = session.execute(
                select(repo.ADVISORY).where(
                    (repo.ADVISORY.c.advisory_id == advisory.id)
                    & (repo.ADVISORY.c.component == advisory.component)
                )
            ).first()
            label = f"{advisory.id} ({advisory.component})"
            after = _comparable(values)
            if row is None:
                session.execute(insert(repo.ADVISORY), [values])
                created.append(label)
                entries.append(
                    Entry("advisory.create", f"advisory:{advisory.id}", {"after": after})
                )
                continue
            before = _comparable(dict(row._mapping))
            if before == after:
                unchanged.append(label)
                continue
            session.execute(
                update(repo.ADVISORY).where(repo.ADVISORY.c.id == row.id).values(**values)
            )
            updated.append(label)
            changes = {
                k: {"before": before.get(k), "after": after[k]}
                for k in after
                if before.get(k) != after[k]
            }
            entries.append(
                Entry(
                    "advisory.update",
                    f"advisory:{advisory.id}",
                    {"component": advisory.component, "changes": changes},
                )
            )
        append_events(session, entries, actor=actor, at=now)
        return ImportResult(tuple(created), tuple(updated), tuple(unchanged))


def check_acceptance(by: str, reason: str) -> str:
    """`by` trimmed, when a risk acceptance by `by` for `reason` can be recorded;
    else `InputError`. What `accept_risk` checks that does not depend on the time,
    for a caller that must refuse a bad acceptance before it writes anything else."""
    by = check_identity(by, kind="risk acceptance by")
    if not reason.strip():
        raise InputError(f"Invalid risk acceptance reason: {reason!r} (say why)")
    check_text(reason, what="risk acceptance reason")
    return by


def accept_risk(
    instance: str,
    advisory: str,
    *,
    reason: str,
    until: datetime,
    actor: str,
    now: datetime | None = None,
    engine: Engine | None = None,
) -> None:
    """`actor` accepts running `advisory`'s affected versions on `instance` until `until`."""
    now = now_or_clock(now)
    actor = check_acceptance(actor, reason)
    check_instant(until, what="risk acceptance end")
    if until <= now:
        raise InputError(f"Invalid risk acceptance end: {isoformat(until)!r} is not in the future")
    with writing(engine) as session:
        known = session.execute(
            select(repo.INSTANCE.c.id).where(
                (repo.INSTANCE.c.name == instance) & repo.INSTANCE.c.retired_at.is_(None)
            )
        ).first()
        if known is None:
            raise NotFoundError(f"Unknown instance: {instance!r}")
        found = session.execute(
            select(repo.ADVISORY.c.id).where(repo.ADVISORY.c.advisory_id == advisory)
        ).first()
        if found is None:
            raise NotFoundError(f"Unknown advisory: {advisory!r}")
        values = {
            "instance": instance,
            "advisory": advisory,
            "by": actor,
            "reason": reason,
            "until": until,
        }
        row = session.execute(
            select(repo.RISK).where(
                (repo.RISK.c.instance == instance) & (repo.RISK.c.advisory == advisory)
            )
        ).first()
        if row is None:
            session.execute(insert(repo.RISK), [values])
        else:
            session.execute(update(repo.RISK).where(repo.RISK.c.id == row.id).values(**values))
        append_events(
            session,
            [
                Entry(
                    "risk.accept",
                    f"risk:{instance}/{advisory}",
                    {
                        "reason": reason,
                        "until": isoformat(until),
                        "replaces": None if row is None else _comparable(dict(row._mapping)),
                    },
                )
            ],
            actor=actor,
            at=now,
        )
