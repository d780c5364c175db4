"""OSV records (ossf.github.io/osv-schema) read as Fleet advisories.

A record becomes one `Advisory` per Fleet component it names: each
`affected[]` entry whose `package.name` is in the component map (names
compared the PyPI way: case-insensitive, runs of `-_.` equal) adds its ranges
and explicit versions to that component's advisory. GitHub advisories list one
entry per release line of the same package, so entries are merged.

Severity, first match wins:

1. `database_specific.severity` of the entry or the record (GitHub style:
   CRITICAL, HIGH, MODERATE or MEDIUM, LOW);
2. the highest CVSS v3.x base score in `severity[]` (entry or record),
   computed with the CVSS 3.1 formula: 9.0 and up critical, 7.0 high,
   4.0 medium, below that low;
3. `default_severity`.

CVSS v4 vectors are not scored: their base score needs the v4 lookup tables,
and an approximation could understate a critical. A record with only a v4
vector takes `default_severity` like a record with none.

`published` is optional in the schema; a record without it is dated by
`modified`. Withdrawn records (`withdrawn` set) yield no advisory.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from packaging.version import Version

from fleet.core.advisories import Advisory, AffectedRange, Severity, parse_versions
from fleet.core.durations import check_instant
from fleet.core.errors import InputError, InvalidOSVRecord, UnmappedOSVPackage
from fleet.core.names import validate_name
from fleet.core.text import SUMMARY_LIMIT, find_unstorable

__all__ = [
    "InvalidOSVRecord",
    "UnmappedOSVPackage",
    "advisories_from_osv",
    "cvss3_base_score",
    "normalize_package_name",
    "osv_package_names",
    "severity_from_score",
]


_DATABASE_SEVERITIES = {
    "CRITICAL": Severity.CRITICAL,
    "HIGH": Severity.HIGH,
    "MODERATE": Severity.MEDIUM,
    "MEDIUM": Severity.MEDIUM,
    "LOW": Severity.LOW,
}
_SEVERITY_RANK = {Severity.LOW: 0, Severity.MEDIUM: 1, Severity.HIGH: 2, Severity.CRITICAL: 3}

# CVSS v3.1 specification, section 7.4 (metric values).
_CVSS3_WEIGHTS: Mapping[str, Mapping[str, float]] = {
    "AV": {"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2},
    "AC": {"L": 0.77, "H": 0.44},
    "PR": {"N": 0.85, "L": 0.62, "H": 0.27},
    "UI": {"N": 0.85, "R": 0.62},
    "S": {"U": 0.0, "C": 0.0},
    "C": {"H": 0.56, "L": 0.22, "N": 0.0},
    "I": {"H": 0.56, "L": 0.22, "N": 0.0},
    "A": {"H": 0.56, "L": 0.22, "N": 0.0},
}
# Privileges weigh more when the scope changes.
_CVSS3_PR_SCOPE_CHANGED = {"N": 0.85, "L": 0.68, "H": 0.5}
_CVSS3_PREFIX = re.compile(r"^CVSS:3\.[01]/")
_PYPI_SEPARATORS = re.compile(r"[-_.]+")


def normalize_package_name(name: str) -> str:
    """A package name as PyPI compares it (PEP 503).

    >>> normalize_package_name("Jinja2_Ext.Foo")
    'jinja2-ext-foo'
    """
    return _PYPI_SEPARATORS.sub("-", name).lower()


def _roundup(value: float) -> float:
    """CVSS 3.1 Appendix A: the smallest one-decimal number >= value, float-safe."""
    as_int = round(value * 100_000)
    if as_int % 10_000 == 0:
        return as_int / 100_000.0
    return (math.floor(as_int / 10_000) + 1) / 10.0


def cvss3_base_score(vector: str) -> float:
    """The base score of a CVSS v3.0 or v3.1 vector (the 3.1 formula serves both).

    Temporal and environmental metrics in the vector are ignored.

    >>> cvss3_base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H")
    9.8
    """
    if not isinstance(vector, str) or not _CVSS3_PREFIX.match(vector):
        raise InputError(f"Invalid CVSS v3 vector: {vector!r} (expected 'CVSS:3.x/AV:..')")
    metrics: dict[str, str] = {}
    for part in vector.split("/")[1:]:
        key, sep, value = part.partition(":")
        if not sep or key in metrics:
            raise InputError(f"Invalid CVSS v3 vector: {vector!r} (bad or repeated {part!r})")
        metrics[key] = value
    for key, weights in _CVSS3_WEIGHTS.items():
        if metrics.get(key) not in weights:
            raise InputError(f"Invalid CVSS v3 vector: {vector!r} (base metric {key} missing)")
    changed = metrics["S"] == "C"
    pr_weights = _CVSS3_PR_SCOPE_CHANGED if changed else _CVSS3_WEIGHTS["PR"]
    iss = 1 - (
        (1 - _CVSS3_WEIGHTS["C"][metrics["C"]])
        * (1 - _CVSS3_WEIGHTS["I"][metrics["I"]])
        * (1 - _CVSS3_WEIGHTS["A"][metrics["A"]])
    )
    impact = 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02) ** 15 if changed else 6.42 * iss
    exploitability = (
        8.22
        * _CVSS3_WEIGHTS["AV"][metrics["AV"]]
        * _CVSS3_WEIGHTS["AC"][metrics["AC"]]
        * pr_weights[metrics["PR"]]
        * _CVSS3_WEIGHTS["UI"][metrics["UI"]]
    )
    if impact <= 0:
        return 0.0
    if changed:
        return _roundup(min(1.08 * (impact + exploitability), 10))
    return _roundup(min(impact + exploitability, 10))


def severity_from_score(score: float) -> Severity:
    """The CVSS qualitative rating of a base score (0.0, "none", counts as low).

    >>> severity_from_score(7.5)
    <Severity.HIGH: 'high'>
    """
    if score >= 9.0:
        return Severity.CRITICAL
    if score >= 7.0:
        return Severity.HIGH
    if score >= 4.0:
        return Severity.MEDIUM
    return Severity.LOW


def osv_package_names(data: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[str]:
    """The package names the records' `affected[]` entries name, first-seen order.

    Tolerant by design (it serves error messages): entries it cannot read are skipped.

    >>> osv_package_names({"id": "X", "affected": [{"package": {"name": "Django"}}]})
    ['Django']
    """
    names: dict[str, None] = {}
    for record in _records(data):
        for entry in _list(record.get("affected")):
            package = entry.get("package") if isinstance(entry, Mapping) else None
            name = package.get("name") if isinstance(package, Mapping) else None
            if isinstance(name, str) and name:
                names.setdefault(name)
    return list(names)


@dataclass
class _Merged:
    """What the entries of one record say about one component."""

    ranges: list[AffectedRange] = field(default_factory=list)
    versions: set[Version] = field(default_factory=set)
    severity: Severity | None = None
    severity_vectors: list[str] = field(default_factory=list)


def advisories_from_osv(
    data: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    component_map: Mapping[str, str],
    *,
    default_severity: Severity | None = None,
) -> list[Advisory]:
    """Read one OSV record, a list of them, or an OSV API answer (`{"vulns": [...]}`).

    `component_map` maps package names to Fleet components. A record none of
    whose packages is mapped raises `UnmappedOSVPackage`; a malformed one
    raises `InvalidOSVRecord`; both name the record.

    >>> record = {"id": "GHSA-p64x-8rxx-wf6q", "published": "2022-07-05T00:00:53Z",
    ...     "database_specific": {"severity": "CRITICAL"},
    ...     "affected": [{"package": {"ecosystem": "PyPI", "name": "Django"}, "ranges": [
    ...         {"type": "ECOSYSTEM", "events": [{"introduced": "3.2"}, {"fixed": "3.2.14"}]}]}]}
    >>> [a] = advisories_from_osv(record, {"django": "web"})
    >>> a.component, a.severity.value, a.affects(Version("3.2.13"))
    ('web', 'critical', True)
    """
    components = _normalized_map(component_map)
    for where, why in find_unstorable(data, "record"):
        raise InvalidOSVRecord(f"Invalid OSV record: {where}: {why}")
    out: list[Advisory] = []
    for record in _records(data):
        out.extend(_advisories_of(record, components, default_severity))
    return out


def _advisories_of(
    record: Mapping[str, Any],
    components: Mapping[str, str],
    default_severity: Severity | None,
) -> list[Advisory]:
    record_id = record.get("id")
    if not isinstance(record_id, str) or not record_id.strip():
        raise InvalidOSVRecord(f"Invalid OSV record: missing 'id' (keys: {sorted(record)!r})")

    def invalid(problem: str) -> InvalidOSVRecord:
        return InvalidOSVRecord(f"Invalid OSV record {record_id}: {problem}")

    if record.get("withdrawn"):
        return []
    affected = record.get("affected")
    if not isinstance(affected, list):
        raise invalid("'affected' must be a list")

    merged: dict[str, _Merged] = {}
    unmapped: dict[str, None] = {}
    for index, entry in enumerate(affected):
        if not isinstance(entry, Mapping):
            raise invalid(f"affected[{index}] is not an object")
        package = entry.get("package")
        if package is None:
            continue  # a GIT-only entry: no package to map
        name = package.get("name") if isinstance(package, Mapping) else None
        if not isinstance(name, str) or not name:
            raise invalid(f"affected[{index}].package has no 'name'")
        component = components.get(normalize_package_name(name))
        if component is None:
            unmapped.setdefault(name)
            continue
        into = merged.setdefault(component, _Merged())
        try:
            _merge_entry(into, entry)
        except InputError as exc:
            raise invalid(f"affected[{index}] ({name}): {exc}") from exc

    if not merged:
        if not unmapped:
            raise invalid("no affected package")
        raise UnmappedOSVPackage(record_id, list(unmapped))

    published_at = _timestamp(record, invalid)
    record_severity = _database_severity(record.get("database_specific"))
    record_vectors = _cvss3_vectors(record.get("severity"))
    aliases = tuple(str(a) for a in _list(record.get("aliases")))
    summary = _summary(record)

    advisories = []
    for component, found in merged.items():
        try:
            severity = (
                found.severity
                or record_severity
                or _cvss_severity([*found.severity_vectors, *record_vectors])
                or default_severity
            )
        except InputError as exc:
            raise invalid(str(exc)) from exc
        if severity is None:
            raise invalid(
                "no severity (no database_specific.severity, no CVSS v3 vector); "
                "give a default severity"
            )
        advisories.append(
            Advisory(
                id=record_id,
                component=component,
                severity=severity,
                published_at=published_at,
                ranges=tuple(found.ranges),
                versions=frozenset(found.versions),
                aliases=aliases,
                summary=summary,
            )
        )
    return advisories


def _merge_entry(into: _Merged, entry: Mapping[str, Any]) -> None:
    ranges = entry.get("ranges", [])
    versions = entry.get("versions", [])
    if not isinstance(ranges, list):
        raise InputError(f"'ranges' must be a list, not {ranges!r}")
    if not isinstance(versions, list):
        raise InputError(f"'versions' must be a list, not {versions!r}")
    for data in ranges:
        if not isinstance(data, Mapping):
            raise InputError(f"Invalid OSV range: {data!r}")
        parsed = AffectedRange.parse(data)
        if parsed not in into.ranges:
            into.ranges.append(parsed)
    into.versions.update(parse_versions(versions))
    into.severity = _most_severe(into.severity, _database_severity(entry.get("database_specific")))
    into.severity_vectors.extend(_cvss3_vectors(entry.get("severity")))


def _records(data: Any) -> list[Mapping[str, Any]]:
    if isinstance(data, Mapping):
        if "id" not in data and isinstance(data.get("vulns"), list):
            data = data["vulns"]
        else:
            return [data]
    if isinstance(data, Sequence) and not isinstance(data, str | bytes):
        records = list(data)
        for index, record in enumerate(records):
            if not isinstance(record, Mapping):
                raise InvalidOSVRecord(f"Invalid OSV record #{index}: {record!r} is not an object")
        return records
    raise InvalidOSVRecord(f"Invalid OSV data: {data!r} (expected a record or a list of records)")


def _normalized_map(component_map: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for package, component in component_map.items():
        key = normalize_package_name(package)
        validate_name(component, kind="component")
        if out.get(key, component) != component:
            raise InputError(
                f"Invalid component map: {package!r} maps to both {out[key]!r} and {component!r}"
            )
        out[key] = component
    return out


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _timestamp(record: Mapping[str, Any], invalid: Callable[[str], InvalidOSVRecord]) -> datetime:
    key = "published" if record.get("published") else "modified"
    raw = record.get(key)
    if not isinstance(raw, str):
        raise invalid("no 'published' or 'modified' timestamp")
    try:
        when = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise invalid(f"{key!r} is not RFC 3339: {raw!r}") from exc
    if when.tzinfo is None:
        raise invalid(f"{key!r} has no time zone: {raw!r}")
    try:
        return check_instant(when, what=key)
    except InputError as exc:
        raise invalid(f"{key!r} {str(exc).partition(' is ')[2]}") from None


def _summary(record: Mapping[str, Any]) -> str | None:
    """The record's summary (or first line of its details), cut to `SUMMARY_LIMIT` bytes."""
    found = _whole_summary(record)
    if found is None or len(found.encode("utf-8")) <= SUMMARY_LIMIT:
        return found
    return found.encode("utf-8")[: SUMMARY_LIMIT - 3].decode("utf-8", "ignore") + "..."


def _whole_summary(record: Mapping[str, Any]) -> str | None:
    summary = record.get("summary")
    if isinstance(summary, str) and summary.strip():
        return summary.strip()
    details = record.get("details")
    if isinstance(details, str):
        for line in details.splitlines():
            if line.strip():
                return line.strip()
    return None


def _database_severity(database_specific: Any) -> Severity | None:
    if not isinstance(database_specific, Mapping):
        return None
    value = database_specific.get("severity")
    return _DATABASE_SEVERITIES.get(value.upper()) if isinstance(value, str) else None


def _cvss3_vectors(severity: Any) -> list[str]:
    return [
        str(item.get("score"))
        for item in _list(severity)
        if isinstance(item, Mapping) and item.get("type") == "CVSS_V3"
    ]


def _cvss_severity(vectors: Iterable[str]) -> Severity | None:
    scores = [cvss3_base_score(v) for v in vectors]
    return severity_from_score(max(scores)) if scores else None


def _most_severe(a: Severity | None, b: Severity | None) -> Severity | None:
    if a is None or b is None:
        return a or b
    return a if _SEVERITY_RANK[a] >= _SEVERITY_RANK[b] else b
