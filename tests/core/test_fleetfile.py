"""The fleet file (format 1): parsing, every validation rule, conversion, `fleet validate`."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.version import Version

from fleet.cli._files import load_fleet_file
from fleet.cli.main import main
from fleet.core.advisories import Severity
from fleet.core.channels import Policy
from fleet.core.errors import FleetFileError, InputError
from fleet.core.fleetfile import (
    FleetFile,
    fleet_file_from_state,
    parse_fleet_data,
    parse_fleet_text,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fleet.yaml"
T = "2026-11-20T10:00:00Z"


def minimal() -> dict[str, Any]:
    """A small valid document that each case breaks in one place."""
    return {
        "format": 1,
        "components": ["api", "web"],
        "versions": [
            {"component": "api", "version": "2.4.1", "released_at": T},
            {
                "component": "web",
                "version": "2.4.0",
                "released_at": T,
                "requires": {"api": ">=2.4,<3"},
            },
        ],
        "channels": [
            {
                "name": "stable",
                "policy": "auto-update",
                "maintenance_window": {"cron": "0 2 * * *", "duration": "4h", "timezone": "UTC"},
            }
        ],
        "instances": [
            {
                "name": "acme-prod",
                "customer": "Acme Corp",
                "channel": "stable",
                "current": {"api": "2.4.1", "web": "2.4.0"},
            }
        ],
        "pins": [
            {
                "scope": "global",
                "component": "api",
                "spec": "<3",
                "reason": "3.x not ready",
                "author": "ops@vendor.example",
                "created_at": T,
            }
        ],
        "advisories": [
            {
                "id": "FLEET-2026-0001",
                "component": "api",
                "severity": "critical",
                "published_at": T,
                "ranges": [
                    {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.4.1"}]}
                ],
            }
        ],
        "risk_acceptances": [
            {
                "instance": "acme-prod",
                "advisory": "FLEET-2026-0001",
                "by": "ciso@vendor.example",
                "reason": "WAF rule",
                "until": "2026-12-31T23:59:59Z",
            }
        ],
    }


def problems_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(FleetFileError) as info:
        parse_fleet_data(data)
    return info.value.problems


def test_minimal_document_is_valid() -> None:
    fleet = parse_fleet_data(minimal())
    assert fleet.components == ["api", "web"]
    assert fleet.channels[0].maintenance_window is not None


def _set(path: str, value: Any) -> Any:
    """A change to `minimal()`: set the value at a dotted path (`instances.0.channel`)."""

    def apply(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return apply


def _delete(path: str) -> Any:
    def apply(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        del node[last]

    return apply


def _append(section: str, item: dict[str, Any]) -> Any:
    def apply(data: dict[str, Any]) -> None:
        data.setdefault(section, []).append(item)

    return apply


PIN = {
    "scope": "global",
    "component": "api",
    "spec": "<3",
    "reason": "r",
    "author": "a@vendor.example",
    "created_at": T,
}

RULES = [
    # format and top level
    ("format missing", _delete("format"), "format: missing (expected 1)"),
    ("format 2", _set("format", 2), "format: unsupported format 2 (expected 1)"),
    (
        "unknown top-level key",
        _set("instnaces", []),
        "top level: unknown key 'instnaces' (did you mean 'instances'?)",
    ),
    (
        "components missing",
        _delete("components"),
        "components: missing (a list of component names)",
    ),
    # names
    (
        "component name",
        _set("components.1", "Web"),
        "components[1]: invalid name 'Web' (expected ^[a-z][a-z0-9-]{0,62}$)",
    ),
    (
        "duplicate component",
        _set("components", ["api", "web", "api"]),
        "components[2]: duplicate component 'api'",
    ),
    (
        "channel name",
        _set("channels.0.name", "Stable"),
        "channels[Stable].name: invalid name 'Stable' (expected ^[a-z][a-z0-9-]{0,62}$)",
    ),
    (
        "instance name too long",
        _set("instances.0.name", "a" * 64),
        f"instances[{'a' * 64}].name: invalid name '{'a' * 64}'",
    ),
    (
        "instance name with underscore",
        _set("instances.0.name", "acme_prod"),
        "instances[acme_prod].name: invalid name 'acme_prod'",
    ),
    # duplicates
    (
        "duplicate version",
        _append("versions", {"component": "api", "version": "2.4.1.0", "released_at": T}),
        "versions[api 2.4.1.0]: duplicate version '2.4.1.0' (same as versions[api 2.4.1])",
    ),
    (
        "duplicate channel",
        _append("channels", {"name": "stable", "policy": "frozen"}),
        "channels[stable]: duplicate channel 'stable'",
    ),
    (
        "duplicate instance",
        _append("instances", {"name": "acme-prod", "customer": "Acme", "channel": "stable"}),
        "instances[acme-prod]: duplicate instance 'acme-prod'",
    ),
    (
        "duplicate advisory",
        _append(
            "advisories",
            {
                "id": "FLEET-2026-0001",
                "component": "api",
                "severity": "low",
                "published_at": T,
                "versions": ["1.0"],
            },
        ),
        "advisories[FLEET-2026-0001 api]: duplicate advisory (id and component) "
        "'FLEET-2026-0001' 'api'",
    ),
    (
        "duplicate risk acceptance",
        lambda d: d["risk_acceptances"].append(dict(d["risk_acceptances"][0])),
        "risk_acceptances[1]: duplicate risk acceptance (same as risk_acceptances[0])",
    ),
    (
        "duplicate pin, another reason",
        lambda d: d["pins"].append({**d["pins"][0], "reason": "said again"}),
        "pins[1]: duplicate pin 'global api <3' (same as pins[0])",
    ),
    # references
    (
        "instance channel",
        _set("instances.0.channel", "stabel"),
        "instances[acme-prod].channel: unknown channel 'stabel' (did you mean 'stable'?)",
    ),
    (
        "version component",
        _set("versions.0.component", "apx"),
        "versions[apx 2.4.1].component: unknown component 'apx' (did you mean 'api'?)",
    ),
    (
        "requires component",
        _set("versions.1.requires", {"wbe": ">=1"}),
        "versions[web 2.4.0].requires: unknown component 'wbe' (did you mean 'web'?)",
    ),
    (
        "requires itself",
        _set("versions.1.requires", {"web": ">=1"}),
        "versions[web 2.4.0].requires: 'web' requires its own component",
    ),
    (
        "current component",
        _set("instances.0.current", {"db": "1.0"}),
        "instances[acme-prod].current: unknown component 'db'",
    ),
    (
        "pin channel scope",
        _set("pins.0.scope", "channel:lts"),
        "pins[0].scope: unknown channel 'lts'",
    ),
    (
        "pin instance scope",
        _set("pins.0.scope", "instance:acme-prd"),
        "pins[0].scope: unknown instance 'acme-prd' (did you mean 'acme-prod'?)",
    ),
    ("pin component", _set("pins.0.component", "db"), "pins[0].component: unknown component 'db'"),
    (
        "advisory component",
        _set("advisories.0.component", "db"),
        "advisories[FLEET-2026-0001 db].component: unknown component 'db'",
    ),
    (
        "risk acceptance instance",
        _set("risk_acceptances.0.instance", "globex"),
        "risk_acceptances[0].instance: unknown instance 'globex'",
    ),
    (
        "risk acceptance by with a zero-width space",
        _set("risk_acceptances.0.by", "ciso\u200b@vendor.example"),
        "risk_acceptances[0].by: 'ciso\\u200b@vendor.example' (U+200B is an invisible format "
        "character)",
    ),
    (
        "risk acceptance by mixing scripts",
        _set("risk_acceptances.0.by", "ci\u0455o@vendor.example"),
        "risk_acceptances[0].by: 'ciѕo@vendor.example' (U+0455 CYRILLIC SMALL LETTER DZE is "
        "Cyrillic, mixed with Latin)",
    ),
    (
        "pin author with a Cyrillic letter",
        _set("pins.0.author", "\u043eps@vendor.example"),
        "pins[0].author: 'оps@vendor.example' (U+043E CYRILLIC SMALL LETTER O is Cyrillic, "
        "mixed with Latin)",
    ),
    (
        "pin author with a zero-width space",
        _set("pins.0.author", "ops\u200b@vendor.example"),
        "pins[0].author: 'ops\\u200b@vendor.example' (U+200B is an invisible format character)",
    ),
    ("pin author blank", _set("pins.0.author", " "), "pins[0].author: must not be empty, got ' '"),
    (
        "pin author too long",
        _set("pins.0.author", "x" * 201),
        "pins[0].author: 'xxxxxxxx",
    ),
    (
        "risk acceptance advisory",
        _set("risk_acceptances.0.advisory", "FLEET-2026-0002"),
        "risk_acceptances[0].advisory: unknown advisory 'FLEET-2026-0002'",
    ),
    # versions and specifiers
    (
        "version not PEP 440",
        _set("versions.0.version", "2.x"),
        "versions[api 2.x].version: invalid version '2.x' (not PEP 440)",
    ),
    (
        "current version not PEP 440",
        _set("instances.0.current", {"api": "latest"}),
        "instances[acme-prod].current.api: invalid version 'latest' (not PEP 440)",
    ),
    ("pin spec", _set("pins.0.spec", ">=x"), "pins[0].spec: invalid specifier '>=x'"),
    (
        "requires spec",
        _set("versions.1.requires", {"api": "2.4"}),
        "versions[web 2.4.0].requires.api: invalid specifier '2.4'",
    ),
    (
        "channel constraint",
        _set("channels.0.constraint", "~2.3"),
        "channels[stable].constraint: invalid specifier '~2.3'",
    ),
    (
        "pin scope syntax",
        _set("pins.0.scope", "chanel:stable"),
        "pins[0].scope: invalid scope 'chanel:stable' "
        "(expected global, channel:<name> or instance:<name>)",
    ),
    # policies and channel values
    (
        "channel policy",
        _set("channels.0.policy", "auto"),
        "channels[stable].policy: unknown policy 'auto' "
        "(expected auto-update, manual-approval or frozen)",
    ),
    (
        "policy override",
        _set("instances.0.policy_override", "freeze"),
        "instances[acme-prod].policy_override: unknown policy 'freeze'",
    ),
    (
        "approvals_required",
        _set("channels.0.approvals_required", 0),
        "channels[stable].approvals_required: must be at least 1, got 0",
    ),
    (
        "approvals_required text",
        _set("channels.0.approvals_required", "two"),
        "channels[stable].approvals_required: expected an integer, got 'two'",
    ),
    (
        "verified_approvals text",
        _set("channels.0.verified_approvals", "yes"),
        "channels[stable].verified_approvals: expected true or false, got 'yes'",
    ),
    (
        "verified_approvals number",
        _set("channels.0.verified_approvals", 1),
        "channels[stable].verified_approvals: expected true or false, got 1",
    ),
    (
        "allow_prereleases text",
        _set("channels.0.allow_prereleases", "yes"),
        "channels[stable].allow_prereleases: expected true or false, got 'yes'",
    ),
    (
        "soak unit",
        _set("channels.0.soak", "48x"),
        "channels[stable].soak: invalid duration '48x' (expected a number and a unit",
    ),
    (
        "soak bare number",
        _set("channels.0.soak", 48),
        "channels[stable].soak: invalid duration 48",
    ),
    (
        "approval timeout zero",
        _set("channels.0.approval_timeout", "0h"),
        "channels[stable].approval_timeout: must be longer than zero, got '0s'",
    ),
    (
        "window cron",
        _set("channels.0.maintenance_window.cron", "0 2 * *"),
        "channels[stable].maintenance_window.cron: invalid cron expression '0 2 * *'",
    ),
    (
        "window zone",
        _set("channels.0.maintenance_window.timezone", "Mars/Base"),
        "channels[stable].maintenance_window.timezone: unknown time zone 'Mars/Base'",
    ),
    (
        "window duration",
        _set("channels.0.maintenance_window.duration", "0m"),
        "channels[stable].maintenance_window.duration: must be longer than zero",
    ),
    # severities, deadlines, advisories
    (
        "severity",
        _set("advisories.0.severity", "urgent"),
        "advisories[FLEET-2026-0001 api].severity: unknown severity 'urgent' "
        "(expected critical, high, medium or low)",
    ),
    (
        "deadline key",
        _set("security", {"deadlines": {"urgent": "1d"}}),
        "security.deadlines.urgent: unknown severity 'urgent'",
    ),
    (
        "deadline value",
        _set("security", {"deadlines": {"low": "forever"}}),
        "security.deadlines.low: invalid duration 'forever'",
    ),
    (
        "advisory affects nothing",
        _set("advisories.0.ranges", []),
        "advisories[FLEET-2026-0001 api]: no ranges and no versions: "
        "the advisory would affect nothing",
    ),
    (
        "OSV range type",
        _set("advisories.0.ranges.0.type", "PYPI"),
        "advisories[FLEET-2026-0001 api].ranges[0].type: unknown OSV range type 'PYPI'",
    ),
    (
        "OSV event key",
        _set("advisories.0.ranges.0.events", [{"introducd": "0"}]),
        "advisories[FLEET-2026-0001 api].ranges[0].events: "
        "event 0: invalid OSV event: {'introducd': '0'}",
    ),
    (
        "OSV event version",
        _set("advisories.0.ranges.0.events", [{"introduced": "0"}, {"fixed": "two"}]),
        "advisories[FLEET-2026-0001 api].ranges[0].events: event 1: invalid version: 'two'",
    ),
    (
        "OSV range without introduced",
        _set("advisories.0.ranges.0.events", [{"fixed": "2.4.1"}]),
        "advisories[FLEET-2026-0001 api].ranges[0]: invalid OSV range",
    ),
    # times
    (
        "naive time",
        _set("versions.0.released_at", "2026-11-20T10:00:00"),
        "versions[api 2.4.1].released_at: time '2026-11-20T10:00:00' has no time zone",
    ),
    (
        "naive datetime object",
        _set("pins.0.created_at", datetime(2026, 11, 20, 10)),
        "pins[0].created_at: time '2026-11-20T10:00:00' has no time zone",
    ),
    (
        "not a time",
        _set("advisories.0.published_at", "yesterday"),
        "advisories[FLEET-2026-0001 api].published_at: invalid time 'yesterday' (expected ISO 8601",
    ),
    (
        "pin expiry before creation",
        _set("pins.0.expires_at", "2026-11-19T00:00:00Z"),
        "pins[0]: expires_at '2026-11-19T00:00:00Z' is not after created_at '2026-11-20T10:00:00Z'",
    ),
    # other values
    (
        "yanked reason without yank",
        _set("versions.0.yanked_reason", "broken"),
        "versions[api 2.4.1]: yanked_reason 'broken' given but yanked is false",
    ),
    (
        "sha256",
        _set("versions.0.artifact", {"url": "file:///a.tar.gz", "sha256": "9f86d0..."}),
        "versions[api 2.4.1].artifact.sha256: invalid sha256 '9f86d0...' "
        "(expected 64 lowercase hex digits)",
    ),
    (
        "empty reason",
        _set("pins.0.reason", " "),
        "pins[0].reason: must not be empty, got ' '",
    ),
    (
        "missing key",
        _delete("instances.0.customer"),
        "instances[acme-prod]: missing key 'customer'",
    ),
    (
        "label value type",
        _set("instances.0.labels", {"tier": 1}),
        "instances[acme-prod].labels.tier: expected a string, got 1",
    ),
    (
        "section not a list",
        _set("pins", {"scope": "global"}),
        "pins: expected a list, got {'scope': 'global'}",
    ),
    (
        "item not a mapping",
        _set("channels", ["stable"]),
        "channels[0]: expected a mapping, got 'stable'",
    ),
]


@pytest.mark.parametrize(("change", "expected"), [r[1:] for r in RULES], ids=[r[0] for r in RULES])
def test_each_rule_is_reported_with_its_location_and_value(change: Any, expected: str) -> None:
    data = copy.deepcopy(minimal())
    change(data)
    problems = problems_of(data)
    assert any(p.startswith(expected) for p in problems), problems


UNKNOWN_KEYS = [
    ("versions.0", "versions[api 2.4.1]: unknown key 'oops'"),
    ("versions.1.requires", None),  # a mapping of names: any key is a component reference
    ("channels.0", "channels[stable]: unknown key 'oops'"),
    ("channels.0.maintenance_window", "channels[stable].maintenance_window: unknown key 'oops'"),
    ("instances.0", "instances[acme-prod]: unknown key 'oops'"),
    ("pins.0", "pins[0]: unknown key 'oops'"),
    ("advisories.0", "advisories[FLEET-2026-0001 api]: unknown key 'oops'"),
    ("advisories.0.ranges.0", "advisories[FLEET-2026-0001 api].ranges[0]: unknown key 'oops'"),
    ("risk_acceptances.0", "risk_acceptances[0]: unknown key 'oops'"),
]


@pytest.mark.parametrize(("where", "expected"), [u for u in UNKNOWN_KEYS if u[1]])
def test_unknown_keys_are_rejected_at_every_level(where: str, expected: str) -> None:
    data = copy.deepcopy(minimal())
    _set(f"{where}.oops", 1)(data)
    assert expected in problems_of(data)


def test_unknown_key_in_artifact_and_security() -> None:
    data = copy.deepcopy(minimal())
    data["versions"][0]["artifact"] = {"url": "file:///a", "sha": "x"}
    data["security"] = {"deadline": {}}
    problems = problems_of(data)
    assert "versions[api 2.4.1].artifact: unknown key 'sha' (did you mean 'sha256'?)" in problems
    assert "security: unknown key 'deadline' (did you mean 'deadlines'?)" in problems


def test_every_problem_is_reported_at_once() -> None:
    data = copy.deepcopy(minimal())
    data["instances"][0]["channel"] = "stabel"
    data["instances"][0]["current"]["web"] = (
        "x.y"  # the item is invalid, its reference still checked
    )
    data["pins"][0]["spec"] = ">=x"
    data["advisories"][0]["severity"] = "urgent"
    problems = problems_of(data)
    assert problems == [
        "instances[acme-prod].current.web: invalid version 'x.y' (not PEP 440)",
        "instances[acme-prod].channel: unknown channel 'stabel' (did you mean 'stable'?)",
        "pins[0].spec: invalid specifier '>=x'",
        "advisories[FLEET-2026-0001 api].severity: unknown severity 'urgent' "
        "(expected critical, high, medium or low)",
    ]


def test_an_invalid_item_does_not_cascade_into_reference_errors() -> None:
    data = copy.deepcopy(minimal())
    data["channels"][0]["soak"] = "48x"  # stable is invalid, yet it exists for acme-prod
    assert problems_of(data) == [
        "channels[stable].soak: invalid duration '48x' "
        "(expected a number and a unit: 30m, 48h, 7d, 2w)"
    ]


def test_unknown_current_version_is_not_a_file_error() -> None:
    data = copy.deepcopy(minimal())
    data["instances"][0]["current"]["api"] = "9.9.9"
    fleet = parse_fleet_data(data)
    assert fleet.instances[0].current["api"] == "9.9.9"


def test_osv_range_accepts_every_key_of_the_osv_range_object() -> None:
    data = copy.deepcopy(minimal())
    data["advisories"][0]["ranges"] = [
        {
            "type": "GIT",
            "repo": "https://github.com/vendor/api",
            "events": [{"introduced": "0"}, {"fixed": "a1b2c3d"}],
        },
        {
            "type": "ECOSYSTEM",
            "events": [{"introduced": "2.0"}, {"last_affected": "2.4.0"}, {"limit": "3"}],
            "database_specific": {"source": "https://osv.dev/x", "severity": "CRITICAL"},
        },
    ]
    data["advisories"][0]["versions"] = ["2.4.0", "2004d"]
    fleet = parse_fleet_data(data)
    advisory = fleet.to_state().advisories[0]
    assert advisory.affects(Version("2.4.0"))
    assert not advisory.affects(Version("2.4.1"))
    assert fleet.advisories[0].versions == ["2.4.0", "2004d"]  # kept as given
    assert parse_fleet_data(fleet.to_data()) == fleet


# YAML and JSON.

YAML_DOC = """
format: 1
components: [api]
versions:
  - {component: api, version: 2.10, released_at: 2026-11-20T10:00:00Z}
  - {component: api, version: 3, released_at: "2026-11-21T10:00:00+01:00"}
channels:
  - {name: stable, policy: auto-update, soak: 48h}
instances:
  - name: acme-prod
    customer: Acme Corp
    channel: stable
    labels: {region: no}
    current: {api: 2.10}
advisories:
  - id: FLEET-1
    component: api
    severity: low
    published_at: 2026-11-20T10:00:00Z
    ranges: [{type: ECOSYSTEM, events: [{introduced: 0}, {fixed: 2.10}]}]
"""


def test_yaml_numbers_and_times_are_read_as_written() -> None:
    fleet = parse_fleet_text(YAML_DOC)
    assert [v.version for v in fleet.versions] == ["2.10", "3"]
    assert fleet.instances[0].current == {"api": "2.10"}
    assert fleet.instances[0].labels == {"region": "no"}  # not False: YAML 1.2 booleans
    assert fleet.versions[0].released_at == datetime(2026, 11, 20, 10, tzinfo=UTC)
    assert fleet.versions[1].released_at == datetime(2026, 11, 21, 9, tzinfo=UTC)
    assert fleet.advisories[0].ranges[0].events == [{"introduced": "0"}, {"fixed": "2.10"}]


def test_data_from_a_plain_yaml_load_is_accepted() -> None:
    """Callers that load YAML themselves pass floats and datetimes: read them, do not crash."""
    data = yaml.safe_load(YAML_DOC.replace("region: no", "region: eu"))
    assert isinstance(data["versions"][0]["released_at"], datetime)
    fleet = parse_fleet_data(data)
    assert fleet.versions[0].version == "2.1"  # the float lost the 0: the docs say to quote
    assert fleet.versions[0].released_at == datetime(2026, 11, 20, 10, tzinfo=UTC)


def test_naive_yaml_timestamp_is_refused_naming_the_value() -> None:
    with pytest.raises(FleetFileError) as info:
        parse_fleet_text(
            YAML_DOC.replace(
                "released_at: 2026-11-20T10:00:00Z", "released_at: 2026-11-20T10:00:00"
            )
        )
    assert info.value.problems == [
        "versions[api 2.10].released_at: time '2026-11-20T10:00:00' has no time zone "
        "(e.g. '2026-11-20T10:00:00Z')"
    ]


def test_json_input_gives_the_same_file() -> None:
    fleet = parse_fleet_text(YAML_DOC)
    text = json.dumps(fleet.to_data(), indent=2)
    assert parse_fleet_text(text) == fleet


def test_yaml_flow_mapping_is_not_mistaken_for_json() -> None:
    fleet = parse_fleet_text("{format: 1, components: [api, web]}")
    assert fleet.components == ["api", "web"]


def test_json_floats_keep_their_text() -> None:
    text = json.dumps(minimal()).replace('"2.4.1"', "2.40")
    fleet = parse_fleet_text(text)
    assert fleet.versions[0].version == "2.40"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("format: 1\ncomponents: [api\n", "line 3, column 1: invalid YAML"),
        ('{"format": 1,', "line 1, column 14: invalid JSON"),
        ("format: 1\nformat: 1\ncomponents: []\n", "line 2, column 1: duplicate key 'format'"),
        ('{"format": 1, "format": 1}', "duplicate key 'format'"),
        ("- a\n- b\n", "top level: expected a mapping, got ['a', 'b']"),
        ("", "top level: expected a mapping, got None"),
    ],
)
def test_syntax_errors(text: str, expected: str) -> None:
    with pytest.raises(FleetFileError) as info:
        parse_fleet_text(text)
    assert info.value.problems[0].startswith(expected), info.value.problems


# Conversion.


@pytest.fixture(scope="module")
def example() -> FleetFile:
    return parse_fleet_text(EXAMPLE.read_text())


def test_example_round_trips_through_data_yaml_and_json(example: FleetFile) -> None:
    data = example.to_data()
    assert parse_fleet_data(data) == example
    assert parse_fleet_text(yaml.safe_dump(data, sort_keys=False)) == example
    assert parse_fleet_text(json.dumps(data)) == example


def test_to_data_writes_the_documented_order_and_omits_defaults(example: FleetFile) -> None:
    data = example.to_data()
    assert list(data) == [
        "format",
        "components",
        "versions",
        "channels",
        "instances",
        "pins",
        "advisories",
        "risk_acceptances",
        "security",
    ]
    stable, lts, beta = data["channels"]
    assert stable == {
        "name": "stable",
        "policy": "auto-update",
        "constraint": "<3",
        "soak": "2d",
        "maintenance_window": {"cron": "0 2 * * *", "duration": "4h", "timezone": "Europe/Berlin"},
    }
    assert "approval_timeout" not in lts  # 72h is the default
    assert beta == {"name": "beta", "policy": "auto-update", "allow_prereleases": True}
    assert data["versions"][0]["released_at"] == "2026-09-01T09:00:00Z"
    assert data["security"] == {
        "deadlines": {"critical": "1d", "high": "1w", "medium": "30d", "low": None}
    }


def test_to_state(example: FleetFile) -> None:
    state = example.to_state()
    assert state.components == ("api", "web", "worker", "migrations")
    assert len(state.registry) == 34
    assert state.channels["stable"].soak == timedelta(hours=48)
    assert state.channels["stable"].maintenance_window is not None
    assert state.channels["lts"].approvals_required == 2
    assert state.channels["beta"].allow_prereleases
    by_name = {i.name: i for i in state.instances}
    assert by_name["globex-eu"].policy_override is Policy.FROZEN
    assert by_name["acme-prod"].current["api"] == Version("2.4.2")
    yanked = state.registry.get("api", Version("2.4.1"))
    assert yanked.yanked and yanked.yanked_reason
    critical = next(a for a in state.advisories if a.severity is Severity.CRITICAL)
    assert critical.aliases == ("CVE-2026-41235",)
    assert critical.affects(Version("2.4.2")) and not critical.affects(Version("2.4.3"))
    assert not critical.affects(Version("2.5.0"))
    now = datetime(2026, 11, 26, 12, tzinfo=UTC)
    assert sum(not p.is_active(now) for p in state.pins) == 1
    assert state.deadlines[Severity.LOW] is None


def test_state_round_trips_through_the_file(example: FleetFile) -> None:
    again = fleet_file_from_state(example.to_state())
    assert parse_fleet_data(again.to_data()) == again
    assert fleet_file_from_state(again.to_state()) == again
    assert again.security is None  # the example's deadlines are the defaults
    assert {(v.component, v.version) for v in again.versions} == {
        (v.component, v.version) for v in example.versions
    }


def test_names_of_people_are_read_trimmed() -> None:
    data = copy.deepcopy(minimal())
    data["pins"][0]["author"] = "  Ελένη\n"
    data["risk_acceptances"][0]["by"] = "\tДмитрий "
    fleet = parse_fleet_data(data)
    assert fleet.pins[0].author == "Ελένη" and fleet.risk_acceptances[0].by == "Дмитрий"


def test_names_the_store_holds_are_written_back_as_they_are() -> None:
    """A name stored before a newer rule refused it leaves the fleet readable (export
    works); the file it exports names it as a problem when read again."""
    fleet = parse_fleet_data(minimal())
    pin = replace(fleet.to_state().pins[0], author="\u0430lice")
    state = replace(fleet.to_state(), pins=(pin,))
    again = fleet_file_from_state(state)
    assert again.pins[0].author == "\u0430lice"
    assert problems_of(again.to_data()) == [
        "pins[0].author: 'аlice' (U+0430 CYRILLIC SMALL LETTER A is Cyrillic, mixed with Latin)"
    ]


def test_changed_deadlines_survive_the_state() -> None:
    data = copy.deepcopy(minimal())
    data["security"] = {"deadlines": {"high": "3d"}}
    fleet = parse_fleet_data(data)
    assert fleet.to_state().deadlines[Severity.HIGH] == timedelta(days=3)
    assert fleet.to_state().deadlines[Severity.CRITICAL] == timedelta(hours=24)
    assert fleet_file_from_state(fleet.to_state()).to_data()["security"] == {
        "deadlines": {"high": "3d"}
    }


# Loader and command.


def test_load_fleet_file_names_a_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(InputError, match=r"No such fleet file: '.*nope\.yaml'"):
        load_fleet_file(missing)


def test_validate_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert out.strip().endswith(
        "valid fleet file: 4 components, 34 versions, 3 channels, 12 instances, "
        "4 pins, 2 advisories, 1 risk acceptance"
    )


def test_validate_lists_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = copy.deepcopy(minimal())
    data["instances"][0]["channel"] = "stabel"
    data["versions"][1]["requires"] = {"wbe": ">=1"}
    data["pins"][0]["spec"] = ">=x"
    path = tmp_path / "fleet.json"
    path.write_text(json.dumps(data))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"{path}: 3 problems",
        f"{path}: versions[web 2.4.0].requires: unknown component 'wbe' (did you mean 'web'?)",
        f"{path}: instances[acme-prod].channel: unknown channel 'stabel' (did you mean 'stable'?)",
        f"{path}: pins[0].spec: invalid specifier '>=x'",
    ]


def test_validate_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert "No such fleet file" in capsys.readouterr().err
