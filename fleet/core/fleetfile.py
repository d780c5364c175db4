"""The fleet file, format 1: one YAML or JSON document that describes a fleet.

`parse_fleet_text` and `parse_fleet_data` read it and report every problem at
once as `where: what` lines, the bad value quoted:

    instances[acme-prod].channel: unknown channel 'stabel' (did you mean 'stable'?)
    versions[api 2.4.1].requires: unknown component 'wbe'
    pins[3].spec: invalid specifier '>=x'

Items are named by their name (channels, instances), `component version`
(versions) or id (advisories) when they have a readable one, else by their
0-based position (pins, risk acceptances).

`FleetFile.to_state()` turns the file into the planner's `FleetState`;
`fleet_file_from_state` and `FleetFile.to_data()` write it back, so that
`parse_fleet_data(f.to_data()) == f`.

YAML is read with YAML 1.2 scalars where 1.1 surprises people: an unquoted
`2.10` stays the text `"2.10"` (not the float 2.1), a time stays text until it
is checked for a zone, and only `true`/`false` are booleans (`no` is Norway).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, TypeGuard, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from packaging.specifiers import InvalidSpecifier as _PkgInvalidSpecifier
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from fleet.core.advisories import (
    DEFAULT_DEADLINES,
    Advisory,
    AffectedRange,
    RangeEvent,
    RiskAcceptance,
    Severity,
    parse_versions,
)
from fleet.core.channels import Channel, MaintenanceWindow, Policy
from fleet.core.durations import check_instant, format_duration, isoformat, parse_duration
from fleet.core.errors import FleetFileError, InputError, InvalidIdentity, InvalidVersion
from fleet.core.identity import check_identity
from fleet.core.instances import Instance
from fleet.core.names import NAME_PATTERN
from fleet.core.pins import Pin, PinScope
from fleet.core.state import FleetState
from fleet.core.text import REASON_LIMIT, SUMMARY_LIMIT, TEXT_LIMIT, check_text, find_unstorable
from fleet.core.versions import ComponentVersion, Registry, parse_specifier, parse_version
from fleet.core.yamltext import MAX_INT_DIGITS, load_yaml
from fleet.core.yamltext import short as _short

__all__ = [
    "FORMAT",
    "AdvisoryEntry",
    "Artifact",
    "ChannelEntry",
    "FleetFile",
    "InstanceEntry",
    "OsvRange",
    "PinEntry",
    "RiskAcceptanceEntry",
    "Security",
    "VersionEntry",
    "Window",
    "fleet_file_from_state",
    "parse_fleet_data",
    "parse_fleet_text",
]

FORMAT = 1
_DEFAULT_APPROVAL_TIMEOUT = timedelta(hours=72)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_E = TypeVar("_E", bound=StrEnum)


# Field types: each check raises ValueError with the bad value quoted.


def _as_text(value: Any) -> Any:
    """Numbers read from YAML or JSON (`2.4`, `3`) as the text they were written as."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _check_name(value: str) -> str:
    if not NAME_PATTERN.fullmatch(value):
        raise ValueError(f"invalid name {_short(value)} (expected ^[a-z][a-z0-9-]{{0,62}}$)")
    return value


def _check_text(value: str) -> str:
    if not value.strip():
        raise ValueError(f"must not be empty, got {_short(value)}")
    return value


def _limit(limit: int, *, required: bool = True) -> Callable[[str], str]:
    def check(value: str) -> str:
        if required:
            _check_text(value)
        try:
            return check_text(value, what="text", limit=limit, required=False)
        except InputError as exc:
            raise ValueError(_lower_first(str(exc)).removeprefix("invalid text: ")) from None

    return check


def _check_version(value: str) -> str:
    try:
        parse_version(value)
    except InvalidVersion:
        raise ValueError(f"invalid version {_short(value)} (not PEP 440)") from None
    return value


def _check_specifier(value: str) -> str:
    try:
        SpecifierSet(value)
    except _PkgInvalidSpecifier:
        raise ValueError(f"invalid specifier {_short(value)}") from None
    return value


def _check_sha256(value: str) -> str:
    if not _SHA256.fullmatch(value):
        raise ValueError(f"invalid sha256 {_short(value)} (expected 64 lowercase hex digits)")
    return value


def _parse_time(value: Any) -> Any:
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"invalid time {_short(value)} (expected ISO 8601 with a zone, "
                "e.g. '2026-11-20T10:00:00Z')"
            ) from None
        shown = value
    elif isinstance(value, datetime):
        moment, shown = value, value.isoformat()
    elif isinstance(value, date):
        raise ValueError(
            f"time {value.isoformat()!r} has no time of day and zone (e.g. '2026-11-20T10:00:00Z')"
        )
    else:
        raise ValueError(f"expected a time such as '2026-11-20T10:00:00Z', got {_short(value)}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"time {shown!r} has no time zone (e.g. '2026-11-20T10:00:00Z')")
    try:
        return check_instant(moment)
    except InputError as exc:
        raise ValueError(f"time {shown!r} {str(exc).partition(' is ')[2]}") from None


def _parse_duration(value: Any) -> Any:
    if isinstance(value, timedelta) or (type(value) is int and value == 0):
        pass  # `soak: 0` is no soak; any other bare number needs its unit
    elif not isinstance(value, str):
        raise ValueError(
            f"invalid duration {_short(value)} (expected a number and a unit: 30m, 48h, 7d, 2w)"
        )
    try:
        return parse_duration(value)
    except InputError as exc:
        raise ValueError(_lower_first(str(exc)).replace("duration: ", "duration ", 1)) from None


def _check_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {_short(value)} (e.g. 'Europe/Berlin', 'UTC')"
        ) from None
    return value


def _check_cron(value: str) -> str:
    try:
        CronSim(value, datetime(2026, 1, 1, tzinfo=ZoneInfo("UTC")))
    except CronSimError as exc:
        raise ValueError(f"invalid cron expression {_short(value)} ({exc})") from None
    return value


def _check_scope(value: str) -> str:
    try:
        PinScope.parse(value)
    except InputError:
        raise ValueError(
            f"invalid scope {_short(value)} (expected global, channel:<name> or instance:<name>)"
        ) from None
    return value


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError(f"must be longer than zero, got {format_duration(value)!r}")
    return value


def _choice(enum: type[_E], kind: str) -> Callable[[Any], Any]:
    values = [e.value for e in enum]
    expected = ", ".join(values[:-1]) + " or " + values[-1]

    def check(value: Any) -> Any:
        if isinstance(value, enum):
            return value
        if isinstance(value, str) and value in values:
            return enum(value)
        raise ValueError(f"unknown {kind} {_short(value)} (expected {expected})")

    return check


# The validation context of entries made from what the database holds: their
# names were checked where they entered, under the rules of that time, and a
# name a newer rule refuses must not make the fleet unreadable.
_STORED = {"stored": True}


def _check_person(value: str, info: ValidationInfo) -> str:
    if isinstance(info.context, dict) and info.context.get("stored"):
        return value
    try:
        return check_identity(value)
    except InvalidIdentity as exc:
        raise ValueError(str(exc).removeprefix("Invalid name: ")) from None


Name = Annotated[str, AfterValidator(_check_name)]
Text = Annotated[str, AfterValidator(_limit(TEXT_LIMIT))]
ShortText = Annotated[str, AfterValidator(_limit(TEXT_LIMIT, required=False))]
LongText = Annotated[str, AfterValidator(_limit(REASON_LIMIT))]
Reason = Annotated[str, AfterValidator(_limit(REASON_LIMIT))]
Person = Annotated[str, AfterValidator(_check_text), AfterValidator(_check_person)]
VersionText = Annotated[str, BeforeValidator(_as_text), AfterValidator(_check_version)]
SpecText = Annotated[str, AfterValidator(_check_specifier)]
Time = Annotated[datetime, BeforeValidator(_parse_time)]
Duration = Annotated[timedelta, BeforeValidator(_parse_duration)]
PositiveDuration = Annotated[timedelta, BeforeValidator(_parse_duration), AfterValidator(_positive)]
PolicyValue = Annotated[Policy, BeforeValidator(_choice(Policy, "policy"))]
SeverityValue = Annotated[Severity, BeforeValidator(_choice(Severity, "severity"))]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# The document.


class Artifact(_Model):
    url: LongText
    sha256: Annotated[str, AfterValidator(_check_sha256)] | None = None


class VersionEntry(_Model):
    component: Name
    version: VersionText
    released_at: Time
    artifact: Artifact | None = None
    requires: dict[Name, SpecText] = Field(default_factory=dict)
    yanked: StrictBool = False
    yanked_reason: Annotated[str, AfterValidator(_limit(REASON_LIMIT, required=False))] | None = (
        None
    )

    @model_validator(mode="after")
    def _reason_needs_yank(self) -> VersionEntry:
        if self.yanked_reason is not None and not self.yanked:
            raise ValueError(
                f"yanked_reason {_short(self.yanked_reason)} given but yanked is false"
            )
        return self

    def to_data(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "component": self.component,
            "version": self.version,
            "released_at": isoformat(self.released_at),
        }
        if self.artifact is not None:
            out["artifact"] = {"url": self.artifact.url}
            if self.artifact.sha256 is not None:
                out["artifact"]["sha256"] = self.artifact.sha256
        if self.requires:
            out["requires"] = dict(self.requires)
        if self.yanked:
            out["yanked"] = True
        if self.yanked_reason is not None:
            out["yanked_reason"] = self.yanked_reason
        return out


class Window(_Model):
    cron: Annotated[str, AfterValidator(_check_cron)]
    duration: PositiveDuration
    timezone: Annotated[str, AfterValidator(_check_zone)] = "UTC"


class ChannelEntry(_Model):
    name: Name
    policy: PolicyValue
    constraint: SpecText | None = None
    allow_prereleases: StrictBool = False
    soak: Duration = timedelta(0)
    maintenance_window: Window | None = None
    approvals_required: Annotated[StrictInt, Field(ge=1)] = 1
    approval_timeout: PositiveDuration = _DEFAULT_APPROVAL_TIMEOUT
    verified_approvals: StrictBool = False

    def to_data(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "policy": self.policy.value}
        if self.constraint is not None:
            out["constraint"] = self.constraint
        if self.allow_prereleases:
            out["allow_prereleases"] = True
        if self.soak:
            out["soak"] = format_duration(self.soak)
        if self.maintenance_window is not None:
            window = self.maintenance_window
            out["maintenance_window"] = {
                "cron": window.cron,
                "duration": format_duration(window.duration),
                "timezone": window.timezone,
            }
        if self.approvals_required != 1:
            out["approvals_required"] = self.approvals_required
        if self.approval_timeout != _DEFAULT_APPROVAL_TIMEOUT:
            out["approval_timeout"] = format_duration(self.approval_timeout)
        if self.verified_approvals:
            out["verified_approvals"] = True
        return out


class InstanceEntry(_Model):
    name: Name
    customer: Text
    channel: Name
    labels: dict[ShortText, ShortText] = Field(default_factory=dict)
    policy_override: PolicyValue | None = None
    target: Text | None = None
    current: dict[Name, VersionText] = Field(default_factory=dict)

    def to_data(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "customer": self.customer,
            "channel": self.channel,
        }
        if self.labels:
            out["labels"] = dict(self.labels)
        if self.policy_override is not None:
            out["policy_override"] = self.policy_override.value
        if self.target is not None:
            out["target"] = self.target
        out["current"] = dict(self.current)
        return out


class PinEntry(_Model):
    scope: Annotated[str, AfterValidator(_check_scope)]
    component: Name
    spec: SpecText
    reason: Reason
    author: Person
    created_at: Time
    expires_at: Time | None = None

    @model_validator(mode="after")
    def _check_expiry(self) -> PinEntry:
        if self.expires_at is not None and self.expires_at <= self.created_at:
            raise ValueError(
                f"expires_at {isoformat(self.expires_at)!r} is not after "
                f"created_at {isoformat(self.created_at)!r}"
            )
        return self

    @property
    def key(self) -> tuple[str, str, str]:
        """What names a pin in a fleet: two with the same key are one pin given twice."""
        return (self.scope, self.component, self.spec)

    def to_data(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "scope": self.scope,
            "component": self.component,
            "spec": self.spec,
            "reason": self.reason,
            "author": self.author,
            "created_at": isoformat(self.created_at),
        }
        if self.expires_at is not None:
            out["expires_at"] = isoformat(self.expires_at)
        return out


_RANGE_TYPES = ("ECOSYSTEM", "SEMVER", "GIT")


def _lower_first(message: str) -> str:
    return message[:1].lower() + message[1:]


def _events_as_text(value: Any) -> Any:
    if isinstance(value, list):
        return [
            {k: _as_text(v) for k, v in event.items()} if isinstance(event, Mapping) else event
            for event in value
        ]
    return value


def _check_range_type(value: str) -> str:
    if value not in _RANGE_TYPES:
        raise ValueError(
            f"unknown OSV range type {_short(value)} (expected ECOSYSTEM, SEMVER or GIT)"
        )
    return value


class OsvRange(_Model):
    """An OSV range object, every key of the OSV schema accepted."""

    type: Annotated[str, AfterValidator(_check_range_type)]
    repo: str | None = None
    events: Annotated[list[dict[str, str]], BeforeValidator(_events_as_text)]
    database_specific: dict[str, Any] | None = None

    @field_validator("events")
    @classmethod
    def _check_events(cls, events: list[dict[str, str]], info: ValidationInfo) -> Any:
        if info.data.get("type") == "GIT":
            return events  # commit hashes: not versions
        problems = []
        for index, event in enumerate(events):
            try:
                RangeEvent.parse(event)
            except InputError as exc:
                problems.append(f"event {index}: {_lower_first(str(exc))}")
        if problems:
            raise ValueError("; ".join(problems))
        return events

    @model_validator(mode="after")
    def _check_range(self) -> OsvRange:
        try:
            AffectedRange.parse(self.to_data())
        except InputError as exc:
            raise ValueError(_lower_first(str(exc))) from None
        return self

    def to_data(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.repo is not None:
            out["repo"] = self.repo
        out["events"] = [dict(e) for e in self.events]
        if self.database_specific is not None:
            out["database_specific"] = self.database_specific
        return out


class AdvisoryEntry(_Model):
    id: Text
    aliases: list[Text] = Field(default_factory=list)
    component: Name
    severity: SeverityValue
    published_at: Time
    summary: Annotated[str, AfterValidator(_limit(SUMMARY_LIMIT, required=False))] | None = None
    ranges: list[OsvRange] = Field(default_factory=list)
    versions: list[Annotated[str, BeforeValidator(_as_text)]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _affects_something(self) -> AdvisoryEntry:
        if not self.ranges and not self.versions:
            raise ValueError("no ranges and no versions: the advisory would affect nothing")
        return self

    def to_data(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id}
        if self.aliases:
            out["aliases"] = list(self.aliases)
        out["component"] = self.component
        out["severity"] = self.severity.value
        out["published_at"] = isoformat(self.published_at)
        if self.summary is not None:
            out["summary"] = self.summary
        if self.ranges:
            out["ranges"] = [r.to_data() for r in self.ranges]
        if self.versions:
            out["versions"] = list(self.versions)
        return out


class RiskAcceptanceEntry(_Model):
    instance: Name
    advisory: Text
    by: Person
    reason: Reason
    until: Time

    def to_data(self) -> dict[str, Any]:
        return {
            "instance": self.instance,
            "advisory": self.advisory,
            "by": self.by,
            "reason": self.reason,
            "until": isoformat(self.until),
        }


class Security(_Model):
    """Deadlines per severity; a severity not listed keeps its default (None: report only)."""

    deadlines: dict[SeverityValue, Duration | None] = Field(default_factory=dict)


class FleetFile(_Model):
    """A parsed, validated fleet file (format 1).

    >>> parse_fleet_text(text).components
    ['api', 'web', 'worker', 'migrations']
    """

    format: int = FORMAT
    components: list[Name]
    versions: list[VersionEntry] = Field(default_factory=list)
    channels: list[ChannelEntry] = Field(default_factory=list)
    instances: list[InstanceEntry] = Field(default_factory=list)
    pins: list[PinEntry] = Field(default_factory=list)
    advisories: list[AdvisoryEntry] = Field(default_factory=list)
    risk_acceptances: list[RiskAcceptanceEntry] = Field(default_factory=list)
    security: Security | None = None

    def deadlines(self) -> dict[Severity, timedelta | None]:
        """The deadline of every severity, defaults filled in.

        >>> file.deadlines()[Severity.CRITICAL]
        datetime.timedelta(days=1)
        """
        out = dict(DEFAULT_DEADLINES)
        if self.security is not None:
            out.update(self.security.deadlines)
        return out

    def to_state(self) -> FleetState:
        """The planner's view of this file.

        >>> parse_fleet_text(text).to_state().channels["stable"].policy
        <Policy.AUTO_UPDATE: 'auto-update'>
        """
        versions = [
            ComponentVersion(
                component=v.component,
                version=parse_version(v.version),
                released_at=v.released_at,
                artifact_url=v.artifact.url if v.artifact else None,
                sha256=v.artifact.sha256 if v.artifact else None,
                requires={c: parse_specifier(s) for c, s in v.requires.items()},
                yanked=v.yanked,
                yanked_reason=v.yanked_reason,
            )
            for v in self.versions
        ]
        channels = {
            c.name: Channel(
                name=c.name,
                policy=c.policy,
                constraint=parse_specifier(c.constraint or ""),
                allow_prereleases=c.allow_prereleases,
                soak=c.soak,
                maintenance_window=(
                    MaintenanceWindow(
                        c.maintenance_window.cron,
                        c.maintenance_window.duration,
                        c.maintenance_window.timezone,
                    )
                    if c.maintenance_window
                    else None
                ),
                approvals_required=c.approvals_required,
                approval_timeout=c.approval_timeout,
                verified_approvals=c.verified_approvals,
            )
            for c in self.channels
        }
        instances = [
            Instance(
                name=i.name,
                customer=i.customer,
                channel=i.channel,
                current={c: parse_version(v) for c, v in i.current.items()},
                labels=dict(i.labels),
                policy_override=i.policy_override,
                target=i.target,
            )
            for i in self.instances
        ]
        pins = [
            Pin(
                scope=PinScope.parse(p.scope),
                component=p.component,
                spec=parse_specifier(p.spec),
                reason=p.reason,
                author=p.author,
                created_at=p.created_at,
                expires_at=p.expires_at,
            )
            for p in self.pins
        ]
        advisories = [
            Advisory(
                id=a.id,
                component=a.component,
                severity=a.severity,
                published_at=a.published_at,
                ranges=tuple(AffectedRange.parse(r.to_data()) for r in a.ranges),
                versions=parse_versions(a.versions),
                aliases=tuple(a.aliases),
                summary=a.summary,
            )
            for a in self.advisories
        ]
        acceptances = [
            RiskAcceptance(
                instance=r.instance, advisory=r.advisory, by=r.by, reason=r.reason, until=r.until
            )
            for r in self.risk_acceptances
        ]
        return FleetState(
            components=tuple(self.components),
            registry=Registry(versions),
            channels=channels,
            instances=instances,
            pins=pins,
            advisories=advisories,
            risk_acceptances=acceptances,
            deadlines=self.deadlines(),
        )

    def to_data(self) -> dict[str, Any]:
        """A plain dict in the documented key order, ready for JSON or YAML.

        >>> parse_fleet_data(file.to_data()) == file
        True
        """
        out: dict[str, Any] = {
            "format": self.format,
            "components": list(self.components),
            "versions": [v.to_data() for v in self.versions],
            "channels": [c.to_data() for c in self.channels],
            "instances": [i.to_data() for i in self.instances],
        }
        if self.pins:
            out["pins"] = [p.to_data() for p in self.pins]
        if self.advisories:
            out["advisories"] = [a.to_data() for a in self.advisories]
        if self.risk_acceptances:
            out["risk_acceptances"] = [r.to_data() for r in self.risk_acceptances]
        if self.security is not None:
            deadlines = self.security.deadlines
            written: dict[str, str | None] = {}
            for severity in Severity:
                if severity in deadlines:
                    delta = deadlines[severity]
                    written[severity.value] = None if delta is None else format_duration(delta)
            out["security"] = {"deadlines": written}
        return out


# Reading text.


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise FleetFileError([f"duplicate key {_short(key)}"])
        out[key] = value
    return out


def _json_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise FleetFileError([f"integer of more than {MAX_INT_DIGITS} digits ({_short(text)})"])
    return int(text)


def parse_fleet_text(text: str) -> FleetFile:
    """Read a fleet file's text: JSON when it is JSON, else YAML.

    >>> parse_fleet_text('{"format": 1, "components": ["api"]}').components
    ['api']
    """
    try:
        return _parse_text(text)
    except RecursionError:
        raise FleetFileError(["top level: nested too deeply to be a fleet file"]) from None


def _parse_text(text: str) -> FleetFile:
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(
                text, object_pairs_hook=_json_object, parse_float=str, parse_int=_json_int
            )
        except json.JSONDecodeError as exc:
            # A YAML flow mapping starts with `{` too; when it is not YAML either,
            # the JSON error is the one that helps.
            try:
                data = load_yaml(text)
            except FleetFileError:
                raise FleetFileError(
                    [f"line {exc.lineno}, column {exc.colno}: invalid JSON ({exc.msg})"]
                ) from exc
    else:
        data = load_yaml(text)
    if not isinstance(data, Mapping):
        raise FleetFileError([f"top level: expected a mapping, got {_short(data)}"])
    return parse_fleet_data(data)


# Validating data.

_TOP_KEYS = (
    "format",
    "components",
    "versions",
    "channels",
    "instances",
    "pins",
    "advisories",
    "risk_acceptances",
    "security",
)

_TYPE_MESSAGES = {
    "string_type": "expected a string",
    "int_type": "expected an integer",
    "bool_type": "expected true or false",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
    "list_type": "expected a list",
    "datetime_type": "expected a time",
    "int_from_float": "expected an integer",
}


def _hint(value: str, known: Iterable[str]) -> str:
    if len(value) > 100:
        return ""
    close = difflib.get_close_matches(value, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _model_at(model: type[BaseModel], loc: Sequence[Any]) -> type[BaseModel] | None:
    """The model class that the location `loc` (a pydantic error's) points into."""
    current: type[BaseModel] = model
    for part in loc:
        if not isinstance(part, str) or part not in current.model_fields:
            continue
        found = _find_model(current.model_fields[part].annotation)
        if found is None:
            return None
        current = found
    return current


def _find_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _find_model(arg)
        if found is not None:
            return found
    return None


def _join(where: str, loc: Sequence[Any]) -> str:
    out = where
    for part in loc:
        if part == "[key]":
            continue
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _pydantic_problems(where: str, model: type[BaseModel], error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors():
        loc = list(item["loc"])
        kind = item["type"]
        value = item.get("input")
        if kind == "extra_forbidden":
            key = str(loc[-1])
            target = _model_at(model, loc[:-1])
            hint = _hint(key, target.model_fields) if target else ""
            problems.append(f"{_join(where, loc[:-1])}: unknown key {_short(key)}{hint}")
        elif kind == "missing":
            problems.append(f"{_join(where, loc[:-1])}: missing key {loc[-1]!r}")
        elif kind == "value_error":
            message = str(item["msg"]).removeprefix("Value error, ")
            problems.append(f"{_join(where, loc)}: {message}")
        elif kind == "greater_than_equal":
            ctx = item.get("ctx") or {}
            problems.append(
                f"{_join(where, loc)}: must be at least {ctx.get('ge')}, got {_short(value)}"
            )
        else:
            message = _TYPE_MESSAGES.get(kind) or str(item["msg"])
            message = message[:1].lower() + message[1:]
            problems.append(f"{_join(where, loc)}: {message}, got {_short(value)}")
    return problems


_M = TypeVar("_M", bound=BaseModel)


class _Checker:
    """Collects every problem of one document."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def add(self, where: str, what: str) -> None:
        self.problems.append(f"{where}: {what}")

    def items(
        self,
        data: Mapping[str, Any],
        key: str,
        model: type[_M],
        label: Callable[[Mapping[str, Any], int], str],
    ) -> tuple[list[tuple[str, _M]], list[tuple[str, Mapping[str, Any]]]]:
        """Validate each item of the list `data[key]`.

        Returns the (where, model) pairs of the valid items and (where, raw)
        pairs of every mapping item.
        """
        raw = data.get(key, [])
        if raw is None:
            raw = []
        if not isinstance(raw, list):
            self.add(key, f"expected a list, got {_short(raw)}")
            return [], []
        parsed: list[tuple[str, _M]] = []
        mappings: list[tuple[str, Mapping[str, Any]]] = []
        for index, item in enumerate(raw):
            if not isinstance(item, Mapping):
                self.add(f"{key}[{index}]", f"expected a mapping, got {_short(item)}")
                continue
            where = f"{key}[{label(item, index)}]"
            mappings.append((where, item))
            try:
                parsed.append((where, model.model_validate(item)))
            except ValidationError as exc:
                self.problems.extend(_pydantic_problems(where, model, exc))
        return parsed, mappings


def _section_order(problem: str) -> int:
    """Problems grouped by section, in the document's order."""
    section = re.split(r"[\[.:]", problem, maxsplit=1)[0]
    return _TOP_KEYS.index(section) + 1 if section in _TOP_KEYS else 0


def _readable(value: Any) -> TypeGuard[str]:
    return (
        isinstance(value, str) and 0 < len(value) <= 80 and "]" not in value and value.isprintable()
    )


def _by_name(item: Mapping[str, Any], index: int) -> str:
    name = item.get("name")
    return name if _readable(name) else str(index)


def _by_id(item: Mapping[str, Any], index: int) -> str:
    ident, component = item.get("id"), item.get("component")
    if not _readable(ident):
        return str(index)
    return f"{ident} {component}" if _readable(component) else ident


def _by_version(item: Mapping[str, Any], index: int) -> str:
    component, version = item.get("component"), _as_text(item.get("version"))
    if _readable(component) and _readable(version):
        return f"{component} {version}"
    return str(index)


def _by_index(item: Mapping[str, Any], index: int) -> str:
    return str(index)


def _raw_names(items: Iterable[tuple[str, Mapping[str, Any]]], key: str) -> set[str]:
    return {item[key] for _, item in items if isinstance(item.get(key), str)}


_PLURALS = {
    "component": "components",
    "channel": "channels",
    "instance": "instances",
    "advisory": "advisories",
}


class _References:
    """Checks that names refer to something the document defines."""

    def __init__(self, check: _Checker, **known: set[str]) -> None:
        self.check = check
        self.known = known

    def name(self, where: str, value: Any, kind: str) -> str | None:
        """`value` when it names a known `kind`; None (reported unless invalid) when not."""
        if not isinstance(value, str):
            return None
        if kind != "advisory" and not NAME_PATTERN.fullmatch(value):
            return None
        known = self.known[_PLURALS[kind]]
        if value in known:
            return value
        self.check.add(where, f"unknown {kind} {_short(value)}{_hint(value, known)}")
        return None

    def duplicates(
        self, items: Sequence[tuple[str, Mapping[str, Any]]], kind: str, *keys: str
    ) -> None:
        """Report every item whose `keys` repeat an earlier item's (what identifies it)."""
        seen: dict[tuple[str, ...], str] = {}
        for where, item in items:
            raw = [item.get(key) for key in keys]
            values = tuple(v for v in raw if isinstance(v, str))
            if len(values) != len(keys):
                continue
            if values in seen:
                shown = " ".join(repr(v) for v in values)
                earlier = "" if seen[values] == where else f" (same as {seen[values]})"
                self.check.add(where, f"duplicate {kind} {shown}{earlier}")
            else:
                seen[values] = where


def parse_fleet_data(data: Mapping[str, Any]) -> FleetFile:
    """Validate a parsed document; raise `FleetFileError` listing every problem.

    >>> parse_fleet_data({"format": 1, "components": ["api"]}).components
    ['api']
    """
    check = _Checker()
    if not isinstance(data, Mapping):
        raise FleetFileError([f"top level: expected a mapping, got {_short(data)}"])
    for key in data:
        if key not in _TOP_KEYS:
            check.add("top level", f"unknown key {_short(key)}{_hint(str(key), _TOP_KEYS)}")

    if "format" not in data:
        check.add("format", f"missing (expected {FORMAT})")
    elif data["format"] != FORMAT or isinstance(data["format"], bool):
        check.add("format", f"unsupported format {_short(data['format'])} (expected {FORMAT})")

    components: list[str] = []
    raw_components = data.get("components")
    if raw_components is None:
        check.add("components", "missing (a list of component names)")
    elif not isinstance(raw_components, list):
        check.add("components", f"expected a list, got {_short(raw_components)}")
    else:
        for index, name in enumerate(raw_components):
            if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
                check.add(
                    f"components[{index}]",
                    f"invalid name {_short(name)} (expected ^[a-z][a-z0-9-]{{0,62}}$)",
                )
            elif name in components:
                check.add(f"components[{index}]", f"duplicate component {name!r}")
            else:
                components.append(name)
    # Names from raw items too, so one bad field does not also report every reference to it.
    known_components = set(components) | {c for c in raw_components or () if isinstance(c, str)}

    versions, raw_versions = check.items(data, "versions", VersionEntry, _by_version)
    channels, raw_channels = check.items(data, "channels", ChannelEntry, _by_name)
    instances, raw_instances = check.items(data, "instances", InstanceEntry, _by_name)
    pins, raw_pins = check.items(data, "pins", PinEntry, _by_index)
    advisories, raw_advisories = check.items(data, "advisories", AdvisoryEntry, _by_id)
    acceptances, raw_acceptances = check.items(
        data, "risk_acceptances", RiskAcceptanceEntry, _by_index
    )
    security: Security | None = None
    if data.get("security") is not None:
        if not isinstance(data["security"], Mapping):
            check.add("security", f"expected a mapping, got {_short(data['security'])}")
        else:
            try:
                security = Security.model_validate(data["security"])
            except ValidationError as exc:
                check.problems.extend(_pydantic_problems("security", Security, exc))

    # References and duplicates are checked on the raw items, so that an item
    # with a bad field still has its other problems reported, and a value that
    # is not even a valid name (already reported) is not reported again.
    refs = _References(
        check,
        components=known_components,
        channels=_raw_names(raw_channels, "name"),
        instances=_raw_names(raw_instances, "name"),
        advisories=_raw_names(raw_advisories, "id"),
    )
    seen_versions: dict[tuple[str, Version], str] = {}
    for where, item in raw_versions:
        component = refs.name(f"{where}.component", item.get("component"), "component")
        requires = item.get("requires")
        if isinstance(requires, Mapping):
            for other in requires:
                if other == component:
                    check.add(f"{where}.requires", f"{_short(other)} requires its own component")
                else:
                    refs.name(f"{where}.requires", other, "component")
        version = _as_text(item.get("version"))
        if component is None or not isinstance(version, str):
            continue
        try:
            release = (component, parse_version(version))
        except InvalidVersion:
            continue
        if release in seen_versions:
            check.add(where, f"duplicate version {version!r} (same as {seen_versions[release]})")
        else:
            seen_versions[release] = where

    refs.duplicates(raw_channels, "channel", "name")
    refs.duplicates(raw_instances, "instance", "name")
    # An advisory is its id and component: one OSV record naming several packages
    # is one entry per component, each with its own severity and ranges.
    refs.duplicates(raw_advisories, "advisory (id and component)", "id", "component")

    for where, item in raw_instances:
        refs.name(f"{where}.channel", item.get("channel"), "channel")
        current = item.get("current")
        if isinstance(current, Mapping):
            for component in current:
                refs.name(f"{where}.current", component, "component")

    for where, item in raw_pins:
        refs.name(f"{where}.component", item.get("component"), "component")
        scope = item.get("scope")
        if isinstance(scope, str) and scope.partition(":")[0] in ("channel", "instance"):
            kind, _, name = scope.partition(":")
            refs.name(f"{where}.scope", name, kind)

    # A pin is its scope, component and spec: `fleet apply` keys them so.
    first_pin: dict[tuple[str, str, str], str] = {}
    for where, pin in pins:
        if pin.key in first_pin:
            check.add(where, f"duplicate pin {' '.join(pin.key)!r} (same as {first_pin[pin.key]})")
        else:
            first_pin[pin.key] = where

    for where, item in raw_advisories:
        refs.name(f"{where}.component", item.get("component"), "component")

    accepted: dict[tuple[str, str], str] = {}
    for where, item in raw_acceptances:
        instance = refs.name(f"{where}.instance", item.get("instance"), "instance")
        advisory = item.get("advisory")
        if isinstance(advisory, str) and advisory.strip():
            refs.name(f"{where}.advisory", advisory, "advisory")
            if instance is not None:
                pair = (instance, advisory)
                if pair in accepted:
                    check.add(where, f"duplicate risk acceptance (same as {accepted[pair]})")
                else:
                    accepted[pair] = where

    if not check.problems:
        # The fields' own checks refuse unstorable text where they look; this
        # catches it anywhere else (an OSV range's `database_specific`, a key).
        for where, why in find_unstorable(data):
            check.add(where, why)
    if check.problems:
        raise FleetFileError(sorted(check.problems, key=_section_order))
    return FleetFile(
        format=FORMAT,
        components=components,
        versions=[v for _, v in versions],
        channels=[c for _, c in channels],
        instances=[i for _, i in instances],
        pins=[p for _, p in pins],
        advisories=[a for _, a in advisories],
        risk_acceptances=[r for _, r in acceptances],
        security=security,
    )


# Writing back.


def fleet_file_from_state(state: FleetState) -> FleetFile:
    """The fleet file that describes `state` (the reverse of `FleetFile.to_state`).

    >>> fleet_file_from_state(file.to_state()).to_state().components
    ('api', 'web', 'worker', 'migrations')
    """
    order = {name: index for index, name in enumerate(state.components)}
    registry = sorted(
        state.registry,
        key=lambda cv: (order.get(cv.component, len(order)), cv.component, cv.version),
    )
    versions = [
        VersionEntry(
            component=cv.component,
            version=str(cv.version),
            released_at=cv.released_at,
            artifact=(Artifact(url=cv.artifact_url, sha256=cv.sha256) if cv.artifact_url else None),
            requires={c: str(s) for c, s in cv.requires.items()},
            yanked=cv.yanked,
            yanked_reason=cv.yanked_reason,
        )
        for cv in registry
    ]
    channels = [
        ChannelEntry(
            name=c.name,
            policy=c.policy,
            constraint=str(c.constraint) or None,
            allow_prereleases=c.allow_prereleases,
            soak=c.soak,
            maintenance_window=(
                Window(
                    cron=c.maintenance_window.cron,
                    duration=c.maintenance_window.duration,
                    timezone=c.maintenance_window.timezone,
                )
                if c.maintenance_window
                else None
            ),
            approvals_required=c.approvals_required,
            approval_timeout=c.approval_timeout,
            verified_approvals=c.verified_approvals,
        )
        for c in state.channels.values()
    ]
    instances = [
        InstanceEntry(
            name=i.name,
            customer=i.customer,
            channel=i.channel,
            labels=dict(i.labels),
            policy_override=i.policy_override,
            target=i.target,
            current={c: str(v) for c, v in i.current.items()},
        )
        for i in state.instances
    ]
    pins = [
        PinEntry.model_validate(
            {
                "scope": str(p.scope),
                "component": p.component,
                "spec": str(p.spec),
                "reason": p.reason,
                "author": p.author,
                "created_at": p.created_at,
                "expires_at": p.expires_at,
            },
            context=_STORED,
        )
        for p in state.pins
    ]
    advisories = [
        AdvisoryEntry(
            id=a.id,
            aliases=list(a.aliases),
            component=a.component,
            severity=a.severity,
            published_at=a.published_at,
            summary=a.summary,
            ranges=[OsvRange.model_validate(_range_data(r)) for r in a.ranges],
            versions=[str(v) for v in sorted(a.versions)],
        )
        for a in state.advisories
    ]
    acceptances = [
        RiskAcceptanceEntry.model_validate(
            {
                "instance": r.instance,
                "advisory": r.advisory,
                "by": r.by,
                "reason": r.reason,
                "until": r.until,
            },
            context=_STORED,
        )
        for r in state.risk_acceptances
    ]
    changed = {s: d for s, d in state.deadlines.items() if DEFAULT_DEADLINES.get(s, d) != d}
    return FleetFile(
        format=FORMAT,
        components=list(state.components),
        versions=versions,
        channels=channels,
        instances=instances,
        pins=pins,
        advisories=advisories,
        risk_acceptances=acceptances,
        security=Security(deadlines=changed) if changed else None,
    )


def _range_data(affected: AffectedRange) -> dict[str, Any]:
    if affected.raw:
        return {k: v for k, v in affected.raw.items() if k in OsvRange.model_fields}
    return {"type": affected.type, "events": [{e.kind: e.raw} for e in affected.events]}
