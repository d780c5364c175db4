"""Hostile input to the core: every malformed value is an `InputError` naming it.

Durations, instants, amounts and free text are bounded in one place each
(`fleet.core.durations`, `fleet.core.rollout`, `fleet.core.text`); the fleet
file reports each bad value at its location and never lets an exception
other than `FleetFileError` out.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.core.durations import (
    EARLIEST,
    LATEST,
    MAX_DURATION,
    check_instant,
    parse_duration,
    parse_instant,
)
from fleet.core.errors import FleetFileError, InputError, InvalidDuration
from fleet.core.fleetfile import parse_fleet_data, parse_fleet_text
from fleet.core.rollback import RollbackTarget
from fleet.core.rollout import Amount
from fleet.core.text import REASON_LIMIT, check_text, find_unstorable
from tests.core.test_fleetfile import minimal


def problems_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(FleetFileError) as info:
        parse_fleet_data(data)
    return info.value.problems


# Durations.


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", timedelta(0)),
        (0, timedelta(0)),
        ("0h", timedelta(0)),
        ("48h", timedelta(hours=48)),
        ("1.5h", timedelta(minutes=90)),
        ("3650d", MAX_DURATION),
        ("520w", timedelta(weeks=520)),
    ],
)
def test_durations_read(text: Any, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "99999999d",
        "99999999999w",
        "99999999999999w",
        "3651d",
        "１h",  # full-width digit: int() and float() would read it
        "٣h",  # Arabic-Indic digit
        "-5h",
        "1e3h",
        "nan",
        "nanh",
        "infh",
        "",
        "h",
        "5",
        "1" * 5000 + "h",
        "5h" + " " * 100,
        "\ud800",
        "1\u200bh",
        "\u200b1h",
        float("nan"),
        float("inf"),
        -1,
        10**400,
        True,
        timedelta(days=4000),
    ],
)
def test_bad_durations_are_input_errors(text: Any) -> None:
    with pytest.raises(InvalidDuration, match="Invalid duration"):
        parse_duration(text)


@settings(max_examples=300)
@given(st.one_of(st.text(), st.integers(), st.floats(), st.from_regex(r"\A[0-9.]{1,30}[smhdw]\Z")))
def test_parse_duration_raises_only_input_errors(text: Any) -> None:
    try:
        delta = parse_duration(text)
    except InputError:
        return
    assert timedelta(0) <= delta <= MAX_DURATION


_instants = st.datetimes(
    min_value=EARLIEST.replace(tzinfo=None) + timedelta(days=1),
    max_value=LATEST.replace(tzinfo=None) - timedelta(days=1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(-timedelta(hours=14))]),
)


@given(
    _instants,
    st.from_regex(r"\A[0-9]{1,5}(\.[0-9]{1,3})?[smhdw]\Z"),
)
def test_any_accepted_duration_fits_any_accepted_instant(moment: datetime, text: str) -> None:
    try:
        moment = check_instant(moment)
        delta = parse_duration(text)
    except InputError:
        return
    assert (moment + delta).year <= 9999
    assert (moment - delta).year >= 1
    assert (moment + MAX_DURATION).astimezone(UTC) > moment


# Instants.


@pytest.mark.parametrize(
    "text",
    [
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "9999-12-31T23:59:59Z",
        "1969-12-31T23:59:59Z",
        "9000-01-01T00:00:00Z",
        "2026-11-20T10:00:00",  # no zone
        "２０２６-11-20T10:00:00Z",
        "2026-11-20T10:00:00Z\u200b",
        "2026-11-20T10:00:00Z" + "0" * 100,
        "\ud800",
        "",
        "yesterday",
    ],
)
def test_bad_instants_are_input_errors(text: str) -> None:
    with pytest.raises(InputError, match="Invalid time"):
        parse_instant(text)


def test_an_instant_in_range_is_kept_in_its_zone() -> None:
    moment = parse_instant("8999-12-31T22:00:00-01:00")
    assert moment.utcoffset() == timedelta(hours=-1)
    assert check_instant(datetime(1970, 1, 1, tzinfo=UTC)) == EARLIEST


@given(st.text(max_size=80))
def test_parse_instant_raises_only_input_errors(text: str) -> None:
    try:
        moment = parse_instant(text)
    except InputError:
        return
    assert EARLIEST <= moment < LATEST


@pytest.mark.parametrize("text", ["r" + "9" * 5000, "r٧", "0001-01-01T00:00:00+01:00", "\ud800"])
def test_bad_rollback_targets_are_input_errors(text: str) -> None:
    with pytest.raises(InputError):
        RollbackTarget.parse(text)


# Amounts (canary, batch, halt_after).


@pytest.mark.parametrize(
    "text",
    ["nan", "nan%", "inf", "-inf%", "1e400", "1e2", "-1", "101%", "", "%", "1.5", "１", "3" * 30],
)
def test_bad_amounts_are_input_errors(text: str) -> None:
    with pytest.raises(InputError, match="Invalid amount"):
        Amount.parse(text)


@pytest.mark.parametrize(
    ("text", "value", "percent"),
    [("3", 3, False), ("0", 0, False), ("10%", 10, True), ("12.5%", 12.5, True), (2, 2, False)],
)
def test_amounts_read(text: Any, value: float, percent: bool) -> None:
    assert Amount.parse(text) == Amount(value, percent)


@given(st.one_of(st.text(max_size=30), st.floats(), st.integers()))
def test_amount_parse_raises_only_input_errors(text: Any) -> None:
    try:
        amount = Amount.parse(text)
    except InputError:
        return
    assert 0 <= amount.of(1000) <= 1000


# Free text.


def test_text_limits() -> None:
    assert check_text("x" * REASON_LIMIT, what="reason") == "x" * REASON_LIMIT
    with pytest.raises(InputError, match=r"Invalid reason: 'xxx.*4097 bytes"):
        check_text("x" * (REASON_LIMIT + 1), what="reason")
    with pytest.raises(InputError, match="lone surrogate"):
        check_text("ok \ud800", what="reason")
    with pytest.raises(InputError, match="NUL"):
        check_text("a\x00b", what="reason")


def test_unstorable_strings_are_found_anywhere() -> None:
    shared = ["\ud800"]
    data = {"a": [shared, shared], "\udfff": 1, "b": {"c": "fine"}}
    assert sorted(find_unstorable(data)) == [
        ("a[0][0]", "a lone surrogate is not text"),
        ("value", "key '\\udfff': a lone surrogate is not text"),
    ]


# The fleet file.


def _channel(data: dict[str, Any], **changes: Any) -> dict[str, Any]:
    data["channels"][0].update(changes)
    return data


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: _channel(d, soak="99999999d"), "channels[stable].soak: invalid duration"),
        (lambda d: _channel(d, soak="99999999999w"), "channels[stable].soak: invalid duration"),
        (lambda d: _channel(d, soak="１h"), "channels[stable].soak: invalid duration '１h'"),
        (lambda d: _channel(d, soak="-5h"), "channels[stable].soak: invalid duration '-5h'"),
        (lambda d: _channel(d, soak=5), "channels[stable].soak: invalid duration 5"),
        (
            lambda d: _channel(d, maintenance_window={"cron": "0 2 * * *", "duration": "9999999w"}),
            "channels[stable].maintenance_window.duration: invalid duration '9999999w'",
        ),
        (
            lambda d: _channel(d, approval_timeout="1e9h"),
            "channels[stable].approval_timeout: invalid duration '1e9h'",
        ),
        (
            lambda d: d["risk_acceptances"][0].update(until="9999-12-31T23:59:59-01:00"),
            "risk_acceptances[0].until: time '9999-12-31T23:59:59-01:00' out of range",
        ),
        (
            lambda d: d["pins"][0].update(expires_at="0001-01-01T00:00:00+01:00"),
            "pins[0].expires_at: time '0001-01-01T00:00:00+01:00' out of range",
        ),
        (
            lambda d: d["advisories"][0].update(published_at="0001-01-01T00:00:00+01:00"),
            "advisories[FLEET-2026-0001 api].published_at: time",
        ),
        (
            lambda d: d["versions"][0].update(released_at="9999-12-31T23:59:59Z"),
            "versions[api 2.4.1].released_at: time",
        ),
        (
            lambda d: d.update(security={"deadlines": {"critical": "99999999999999w"}}),
            "security.deadlines.critical: invalid duration",
        ),
        (
            lambda d: d["versions"][0].update(yanked=True, yanked_reason="x" * 10_000_000),
            "versions[api 2.4.1].yanked_reason: 'xxx",
        ),
        (
            lambda d: d["pins"][0].update(reason="y" * 5000),
            "pins[0].reason: 'yyy",
        ),
        (
            lambda d: d["instances"][0].update(customer="\ud800"),
            "instances[acme-prod].customer: '\\ud800' (a lone surrogate is not text)",
        ),
        (
            lambda d: d["instances"][0].update(labels={"region": "eu\x00"}),
            "instances[acme-prod].labels.region: 'eu\\x00' (a NUL character",
        ),
    ],
)
def test_hostile_values_are_reported_where_they_are(change: Any, expected: str) -> None:
    data = copy.deepcopy(minimal())
    change(data)
    problems = problems_of(data)
    assert any(p.startswith(expected) for p in problems), problems
    assert all(len(p) < 400 for p in problems), "a huge value is quoted cut short"


@pytest.mark.parametrize("soak", [0, "0", "0h"])
def test_soak_zero_is_no_soak(soak: Any) -> None:
    data = _channel(copy.deepcopy(minimal()), soak=soak)
    assert parse_fleet_data(data).channels[0].soak == timedelta(0)


def test_a_json_fleet_file_with_a_lone_surrogate_is_refused() -> None:
    data = minimal()
    data["pins"][0]["reason"] = "\ud800"
    text = json.dumps(data)
    with pytest.raises(FleetFileError) as info:
        parse_fleet_text(text)
    assert info.value.problems == ["pins[0].reason: '\\ud800' (a lone surrogate is not text)"]


def test_a_lone_surrogate_where_no_field_looks_is_refused_too() -> None:
    data = minimal()
    data["advisories"][0]["ranges"][0]["database_specific"] = {"note": "\ud800"}
    assert problems_of(data) == [
        "advisories[0].ranges[0].database_specific.note: a lone surrogate is not text"
    ]


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(
        [
            ("channels", 0, "soak"),
            ("channels", 0, "approval_timeout"),
            ("pins", 0, "expires_at"),
            ("pins", 0, "reason"),
            ("pins", 0, "author"),
            ("risk_acceptances", 0, "until"),
            ("risk_acceptances", 0, "by"),
            ("instances", 0, "customer"),
            ("advisories", 0, "published_at"),
        ]
    ),
    st.one_of(st.text(max_size=40), st.integers(), st.floats(), st.none(), st.booleans()),
)
def test_any_value_anywhere_is_valid_or_a_fleet_file_error(where: Any, value: Any) -> None:
    section, index, key = where
    data = copy.deepcopy(minimal())
    data[section][index][key] = value
    try:
        fleet = parse_fleet_data(data)
    except FleetFileError:
        return
    fleet.to_state()
    parse_fleet_data(fleet.to_data())
