"""The fleet as a whole: load it, apply a fleet file to it, export it.

`apply_fleet_file` is a declarative upsert: objects are matched by key
(component and version, channel name, instance name, pin scope + component +
specifier, advisory id + component, risk acceptance instance + advisory) and
only the differences are written, each with its own audit event
(`<kind>.create`, `<kind>.update` with the changed fields, `<kind>.delete`,
`instance.retire`) and one `fleet.apply` summary. Applying the same file
twice writes nothing and appends nothing. Objects missing from the file stay
unless `prune` is given; pruning retires instances (their history keeps its
subject) and never touches manifests, deployment records, approvals or the
audit chain.

Once Fleet has deployed a manifest to an instance, that manifest is what the
instance runs: the file's `current` for it is ignored (and noted in the
result) so that re-applying an older file never rewrites what was deployed.

Before anything is written, the fleet that would result (the database
merged with the file) is checked like a fleet file: a file whose references
only make sense with objects it would delete is refused whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Table, bindparam, delete, insert, update

from fleet.core.advisories import DEFAULT_DEADLINES
from fleet.core.errors import FleetFileError
from fleet.core.fleetfile import FleetFile, Security, fleet_file_from_state, parse_fleet_data
from fleet.core.identity import check_identity
from fleet.core.state import FleetState
from fleet.db import fleet as repo
from fleet.db.audit import Entry, append_events
from fleet.db.bulk import bulk_insert
from fleet.db.engine import get_engine
from fleet.db.migrate import require_current
from fleet.services._common import now_or_clock, reading, writing

__all__ = ["ApplyResult", "Change", "apply_fleet_file", "export_fleet_file", "load_state"]

Key = tuple[str, ...]


def load_state(*, engine: Engine | None = None) -> FleetState:
    """The fleet in the database, as the planner reads it.

    Without `engine`, the settings' database is used and must be set up.
    """
    if engine is None:
        engine = get_engine()
        require_current(engine)
    with reading(engine) as session:
        return repo.load_state(session)


def export_fleet_file(*, engine: Engine | None = None) -> FleetFile:
    """The database as a fleet file; applying it back changes nothing."""
    return fleet_file_from_state(load_state(engine=engine))


@dataclass(frozen=True, slots=True)
class Change:
    action: str  # create, update, delete, retire, restore, set
    kind: str
    subject: str


@dataclass(frozen=True, slots=True)
class ApplyResult:
    changes: tuple[Change, ...] = ()
    audit_events: int = 0
    notes: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for change in self.changes:
            out[change.action] = out.get(change.action, 0) + 1
        return out

    def summary(self) -> str:
        if not self.changes:
            return "no changes"
        return ", ".join(f"{n} {action}d" for action, n in sorted(self.counts().items())).replace(
            "setd", "set"
        )


# How each kind of object is keyed, named in the audit chain and written.
_Spec = tuple[Callable[[Any], Key], Callable[[Key], str], Callable[[Any], dict[str, Any]]]
_KINDS: Mapping[str, _Spec] = {
    "version": (
        lambda e: (e.component, e.version),
        lambda k: f"version:{k[0]}@{k[1]}",
        repo.values_of_version,
    ),
    "channel": (lambda e: (e.name,), lambda k: f"channel:{k[0]}", repo.values_of_channel),
    "instance": (lambda e: (e.name,), lambda k: f"instance:{k[0]}", repo.values_of_instance),
    "pin": (
        lambda e: e.key,
        lambda k: f"pin:{k[0]}/{k[1]}{k[2]}",
        repo.values_of_pin,
    ),
    "advisory": (
        lambda e: (e.id, e.component),
        lambda k: f"advisory:{k[0]}",
        repo.values_of_advisory,
    ),
    "risk": (
        lambda e: (e.instance, e.advisory),
        lambda k: f"risk:{k[0]}/{k[1]}",
        repo.values_of_risk,
    ),
}
_SECTIONS = {
    "version": "versions",
    "channel": "channels",
    "instance": "instances",
    "pin": "pins",
    "advisory": "advisories",
    "risk": "risk_acceptances",
}


def _keyed(fleet: FleetFile, kind: str) -> dict[Key, Any]:
    key_of = _KINDS[kind][0]
    out: dict[Key, Any] = {}
    problems = []
    for entry in getattr(fleet, _SECTIONS[kind]):
        key = key_of(entry)
        if key in out:
            problems.append(f"{_SECTIONS[kind]}: duplicate {kind} {' '.join(key)!r}")
        out[key] = entry
    if problems:
        raise FleetFileError(problems)
    return out


def _field_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    return {
        name: {"before": before.get(name), "after": after.get(name)}
        for name in sorted(set(before) | set(after))
        if before.get(name) != after.get(name)
    }


def _bulk_update(session: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    columns = [c for c in rows[0] if c != "_id"]
    statement = (
        update(table)
        .where(table.c.id == bindparam("_id"))
        .values({c: bindparam(f"v_{c}") for c in columns})
    )
    params = [{"_id": r["_id"], **{f"v_{c}": r[c] for c in columns}} for r in rows]
    session.execute(statement, params)


def _deadlines(security: Security | None) -> dict[str, int | None]:
    merged = dict(DEFAULT_DEADLINES)
    if security is not None:
        merged.update(security.deadlines)
    return {
        str(severity): None if delta is None else int(delta.total_seconds())
        for severity, delta in merged.items()
    }


def apply_fleet_file(
    fleet: FleetFile,
    *,
    actor: str,
    prune: bool = False,
    now: datetime | None = None,
    flow_run_id: str | None = None,
    engine: Engine | None = None,
) -> ApplyResult:
    """Make the database describe `fleet`, writing only the differences."""
    now = now_or_clock(now)
    actor = check_identity(actor, kind="actor")
    desired = fleet_file_from_state(fleet.to_state())
    with writing(engine) as session:
        stored = repo.load_stored(session)
        current = fleet_file_from_state(stored.state)
        desired, notes = _keep_deployed(desired, current, stored.deployed)
        merged = _merge(current, desired, fleet, prune=prune)
        if current.components:
            try:
                parse_fleet_data(merged.to_data())
            except FleetFileError as exc:
                raise FleetFileError(
                    [f"{p} (in the fleet that applying would leave)" for p in exc.problems]
                ) from None
        changes, entries = _write(session, stored, current, merged, prune=prune, now=now)
        if entries:
            entries.append(
                Entry(
                    "fleet.apply",
                    "fleet",
                    {"prune": prune, "changes": ApplyResult(tuple(changes)).counts()},
                )
            )
        append_events(session, entries, actor=actor, at=now, flow_run_id=flow_run_id)
        return ApplyResult(tuple(changes), len(entries), tuple(notes))


def _keep_deployed(
    desired: FleetFile, current: FleetFile, deployed: Mapping[str, int]
) -> tuple[FleetFile, list[str]]:
    """The file with each deployed instance's `current` taken from the database."""
    if not deployed:
        return desired, []
    running = {i.name: i.current for i in current.instances if i.name in deployed}
    notes = []
    instances = []
    for entry in desired.instances:
        if entry.name in running and entry.current != running[entry.name]:
            notes.append(
                f"instance {entry.name}: runs revision {deployed[entry.name]} "
                f"({running[entry.name]}); the file's current versions are ignored"
            )
            entry = entry.model_copy(update={"current": running[entry.name]})
        instances.append(entry)
    return desired.model_copy(update={"instances": instances}), notes


def _merge(current: FleetFile, desired: FleetFile, given: FleetFile, *, prune: bool) -> FleetFile:
    sections: dict[str, list[Any]] = {}
    for kind, section in _SECTIONS.items():
        wanted = _keyed(desired, kind)
        kept = {} if prune else _keyed(current, kind)
        sections[section] = list({**kept, **wanted}.values())
    components = list(desired.components)
    if not prune:
        components += [c for c in current.components if c not in components]
    security = desired.security if given.security is not None or prune else current.security
    return FleetFile(components=components, security=security, **sections)


def _write(
    session: Connection,
    stored: repo.StoredFleet,
    current: FleetFile,
    merged: FleetFile,
    *,
    prune: bool,
    now: datetime,
) -> tuple[list[Change], list[Entry]]:
    changes: list[Change] = []
    entries: list[Entry] = []

    def record(action: str, kind: str, subject: str, details: Mapping[str, Any]) -> None:
        changes.append(Change(action, kind, subject))
        entries.append(Entry(f"{kind}.{action}", subject, details))

    if merged.components != current.components:
        session.execute(delete(repo.COMPONENT))
        session.execute(
            insert(repo.COMPONENT),
            [{"name": name, "position": i} for i, name in enumerate(merged.components)],
        )
        record(
            "set",
            "components",
            "components",
            {"before": list(current.components), "after": list(merged.components)},
        )

    for kind, (_, subject_of, values_of) in _KINDS.items():
        table = repo.TABLES[kind]
        ids = stored.ids[kind]
        before = {k: e.to_data() for k, e in _keyed(current, kind).items()}
        after = _keyed(merged, kind)
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for key, entry in after.items():
            data = entry.to_data()
            old = before.get(key)
            if old == data:
                continue
            subject = subject_of(key)
            if old is not None:
                updates.append({"_id": ids[key], **values_of(entry)})
                record("update", kind, subject, {"changes": _field_changes(old, data)})
            elif kind == "instance" and key[0] in stored.retired:
                updates_restore = {"_id": stored.retired[key[0]], **values_of(entry)}
                _bulk_update(session, table, [{**updates_restore, "retired_at": None}])
                record("restore", kind, subject, {"after": data})
            else:
                inserts.append(values_of(entry))
                record("create", kind, subject, {"after": data})
        _bulk_update(session, table, updates)
        bulk_insert(session, table, inserts)
        if prune:
            gone = [key for key in before if key not in after]
            _delete(session, table, kind, [ids[k] for k in gone], now)
            for key in gone:
                action = "retire" if kind == "instance" else "delete"
                record(action, kind, subject_of(key), {"before": before[key]})

    old_deadlines, new_deadlines = _deadlines(current.security), _deadlines(merged.security)
    if old_deadlines != new_deadlines:
        session.execute(delete(repo.DEADLINE))
        rows = [
            {"severity": s, "seconds": v}
            for s, v in new_deadlines.items()
            if v != _deadlines(None)[s]
        ]
        if rows:
            session.execute(insert(repo.DEADLINE), rows)
        record(
            "update",
            "security",
            "security",
            {"changes": _field_changes(old_deadlines, new_deadlines)},
        )
    return changes, entries


def _delete(
    session: Connection, table: Table, kind: str, ids: Iterable[int], now: datetime
) -> None:
    ids = list(ids)
    if not ids:
        return
    if kind == "instance":
        session.execute(update(table).where(table.c.id.in_(ids)).values(retired_at=now))
    else:
        session.execute(delete(table).where(table.c.id.in_(ids)))
