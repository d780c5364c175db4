"""The fast YAML path against the reference loader it stands for.

`load_yaml` builds data from libyaml's events and hands anything unusual to
`load_reference`. These tests check that, for any text, the two give the same
data with the same types and key order, or the same error; and that an
ordinary fleet file stays on the fast path, where the speed is.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet.core.errors import FleetFileError
from fleet.core.fleetfile import fleet_file_from_state, parse_fleet_text
from fleet.core.yamltext import (
    MAX_INT_DIGITS,
    _NotPlain,
    load_plain,
    load_reference,
    load_yaml,
    short,
)
from tests.core.test_properties import fleets


def typed(value: Any) -> Any:
    """`value` with every type spelled out: 1, True and '1' differ, and so does key order."""
    if isinstance(value, dict):
        return ("map", [(typed(k), typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("seq", [typed(v) for v in value])
    return (type(value).__name__, value)


def outcome(load: Any, text: str) -> Any:
    try:
        return ("data", typed(load(text)))
    except FleetFileError as exc:
        return ("error", str(exc))


def assert_same(text: str) -> None:
    assert outcome(load_yaml, text) == outcome(load_reference, text), text


# Plain scalars whose YAML 1.1 reading differs from what they look like.
TRICKY = [
    "",
    "~",
    "null",
    "Null",
    "NULL",
    "nULL",
    "true",
    "True",
    "TRUE",
    "tRUE",
    "false",
    "yes",
    "no",
    "on",
    "off",
    "y",
    "n",
    "0",
    "-0",
    "+0",
    "007",
    "08",
    "0o17",
    "0x1F",
    "0x_",
    "0b101",
    "0b_",
    "-0b1",
    "1_000",
    "1:30",
    "190:20:30",
    "1:70",
    "2.10",
    "1e3",
    ".inf",
    "-.Inf",
    ".NaN",
    "2001-12-14",
    "2001-12-14t21:59:43.10-05:00",
    "=",
    "<<",
    "4.9.4",
    "api",
    "Customer 0",
    "K\u0130LO",
    "\u200bapi",
    "9" * (MAX_INT_DIGITS + 1),
]

# Pieces of YAML syntax, most of them off the fast path.
SYNTAX = [
    "&a ",
    "*a",
    "!!str ",
    "!!int ",
    "!!binary ",
    "!custom ",
    "! ",
    "<<: ",
    "---",
    "\n---\n",
    "\n...\n",
    "...",
    "%YAML 1.1",
    "%TAG !e! tag:example.com,2000:",
    "? ",
    "{",
    "}",
    "[",
    "]",
    ", ",
    "'",
    '"',
    "|",
    ">-",
    "# note",
    "\t",
    "@",
    "`",
]

scalars = st.sampled_from(TRICKY) | st.text(
    st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs")), max_size=8
)
tokens = st.sampled_from(SYNTAX) | scalars | st.sampled_from([": ", "- ", "  ", "a", "b"])
lines = st.lists(tokens, max_size=6).map("".join)
texts = st.lists(lines, max_size=8).map("\n".join)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts)
def test_any_text_reads_as_the_reference_reads_it(text: str) -> None:
    assert_same(text)


# Flow-style documents with anchors on any node and aliases anywhere, keys
# included: sharing, self-reference, duplicate anchors, collections as keys.
flow_leaves = st.sampled_from(
    ["a", "b", "1", "0x1F", "~", "true", "no", "2.10", "'q'", '"x"', "*a", "*b", "*c"]
)
flow_nodes = st.recursive(
    flow_leaves,
    lambda inner: (
        st.lists(inner, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]")
        | st.lists(st.tuples(inner, inner), max_size=3).map(
            lambda kv: "{" + ", ".join(f"{k}: {v}" for k, v in kv) + "}"
        )
        | st.tuples(st.sampled_from(["&a ", "&b ", "&c "]), inner).map("".join)
    ),
    max_leaves=12,
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flow_nodes)
def test_anchored_flow_documents_read_as_the_reference_reads_them(text: str) -> None:
    try:
        expected = outcome(load_reference, text)
    except RecursionError:  # a collection inside itself: `typed` cannot spell it out
        with pytest.raises(_NotPlain):
            load_plain(text)
        return
    assert outcome(load_yaml, text) == expected, text


data = st.recursive(
    st.sampled_from(TRICKY) | st.integers(-(10**20), 10**20) | st.booleans() | st.none(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(TRICKY) | st.integers(0, 3) | st.booleans(), inner, max_size=4
        )
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(data, st.sampled_from([None, True, False]), st.sampled_from([None, "'", '"']))
def test_dumped_data_reads_as_the_reference_reads_it(value: Any, flow: Any, style: Any) -> None:
    assert_same(yaml.safe_dump(value, default_flow_style=flow, default_style=style))


@pytest.mark.parametrize(
    "text",
    [
        "&a {k: *a}\n",
        "a: !!str 1\n",
        "a: !!binary aGk=\n",
        "base: &b {x: 1}\nc:\n  <<: *b\n  y: 2\n",
        "a: =\n",
        "? [1, 2]\n: pair\n",
        "? {k: v}\n: pair\n",
        "a: 1\n---\nb: 2\n",
        "a: 1\na: 2\n",
        "a: 1\nb:\n  c: 1\n  c: 2\n",
        "1: one\ntrue: yes\n",
        "a: 0x_\n",
        f"a: {'9' * (MAX_INT_DIGITS + 1)}\n",
        "a: ]\n",
        "a: @x\n",
        "a: *missing\n",
        "- &a x\n- &a y\n",
    ],
)
def test_rare_forms_go_to_the_reference(text: str) -> None:
    with pytest.raises(_NotPlain):
        load_plain(text)
    assert_same(text)


@pytest.mark.parametrize(
    "text",
    [
        "a: &x 1\nb: *x\n",
        "base: &labels {tier: gold}\nx: *labels\ny: [*labels, *labels]\n",
        "- &k key\n- {*k : v}\n",
        "a: &e\nb: *e\n",
    ],
)
def test_anchors_and_aliases_stay_on_the_fast_path(text: str) -> None:
    assert typed(load_plain(text)) == typed(load_reference(text))


def test_a_list_inside_itself_goes_to_the_reference_and_is_refused() -> None:
    text = "format: 1\ncomponents: &a [api, *a]\n"
    with pytest.raises(_NotPlain):
        load_plain(text)
    with pytest.raises(FleetFileError):
        parse_fleet_text(text)


def test_an_alias_is_the_anchored_value_itself_as_in_the_reference() -> None:
    text = "x: &labels {tier: gold}\ny: *labels\n"
    fast, slow = load_plain(text), load_reference(text)
    assert fast["x"] is fast["y"] and slow["x"] is slow["y"]


def test_a_null_key_given_twice_keeps_the_last_value_as_the_reference_does() -> None:
    assert load_plain("~: 1\nnull: 2\n") == {None: 2}
    assert_same("~: 1\nnull: 2\n")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("a: 1\na: 2\n", "line 2, column 1: duplicate key 'a'"),
        ("1: x\ntrue: y\n", "line 2, column 1: duplicate key True"),
        ("a: 0b_\n", "line 1, column 4: invalid int '0b_'"),
        (
            f"a: -{'1' * 5000}\n",
            f"line 1, column 4: integer of more than 4300 digits ('-{'1' * 95}...)",
        ),
        ("a: 1\n---\nb: 2\n", "line 2, column 1: invalid YAML (but found another document)"),
    ],
)
def test_errors_name_the_line_and_value(text: str, error: str) -> None:
    with pytest.raises(FleetFileError) as caught:
        load_yaml(text)
    assert str(caught.value) == error


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleets(timed=True))
def test_a_fleet_file_stays_on_the_fast_path(state: Any) -> None:
    text = yaml.safe_dump(fleet_file_from_state(state).to_data(), sort_keys=False)
    assert typed(load_plain(text)) == typed(load_reference(text))


@pytest.mark.parametrize("depth", [200, 5000])
def test_deep_nesting_reads_as_the_reference_reads_it(depth: int) -> None:
    # libyaml refuses more than 1,000 levels.
    assert_same("[" * depth + "]" * depth)


@pytest.mark.parametrize("depth", [900, 5000])
def test_a_deep_fleet_file_is_refused_with_a_message(depth: int) -> None:
    with pytest.raises(FleetFileError):
        parse_fleet_text("format: 1\ncomponents: " + "[" * depth + "]" * depth)


@pytest.mark.parametrize(
    "text", ['{"format": 1, "components": [' + "9" * 5000 + "]}", "format: 1\nx: " + "9" * 5000]
)
def test_a_huge_integer_is_refused_with_a_message(text: str) -> None:
    with pytest.raises(FleetFileError, match="integer of more than 4300 digits"):
        parse_fleet_text(text)


def test_a_generated_fleet_file_with_shared_values_stays_on_the_fast_path() -> None:
    # PyYAML writes an object met twice as an anchor and aliases: a generator
    # that reuses one labels mapping makes such a file.
    labels = {"tier": "gold", "region": "eu"}
    current = {"api": "2.4.1"}
    data = {
        "format": 1,
        "components": ["api"],
        "instances": [
            {"name": f"i-{n}", "channel": "stable", "labels": labels, "current": current}
            for n in range(50)
        ],
    }
    text = yaml.safe_dump(data, sort_keys=False)
    assert "&id001" in text and "*id001" in text
    assert typed(load_plain(text)) == typed(load_reference(text))


def alias_bomb(levels: int) -> str:
    lines = ["format: 1", "x0: &l0 [a, a, a, a, a, a, a, a, a, a]"]
    for i in range(1, levels + 1):
        lines.append(f"x{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]")
    return "\n".join([*lines, f"components: [*l{levels}]"]) + "\n"


@pytest.mark.parametrize("text", [alias_bomb(8), alias_bomb(8).replace("format: 1", "f: !!str 1")])
def test_aliases_that_expand_past_the_limit_are_refused_on_either_path(text: str) -> None:
    with pytest.raises(FleetFileError, match="aliases expand the document past 5,000,000 values"):
        load_yaml(text)


def test_aliases_below_the_limit_read_as_the_reference_reads_them() -> None:
    assert_same(alias_bomb(4))


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("a: 0x" + "a" * 3600 + "\n", "integer of more than 4300 digits"),
        ("a: 1" + ":0" * 3000 + "\n", "integer of more than 4300 digits"),
        ("a: !!bool x\n", "line 1, column 4: invalid bool 'x'"),
        ("a: !!timestamp x\n", "line 1, column 4: invalid timestamp 'x'"),
        ("a: b\nc: \ud800\n", "line 2, column 4: lone surrogate '\\ud800' (not Unicode text)"),
    ],
)
def test_values_python_cannot_hold_are_refused_with_their_place(text: str, error: str) -> None:
    with pytest.raises(FleetFileError, match=re.escape(error)):
        load_yaml(text)


def test_how_deep_a_mapping_is_does_not_change_which_error_is_told() -> None:
    deep = "{a: " * 300 + "1" + "}" * 300
    for text in (f"x: {deep}\n", f"x: {deep}\ny: {{b: 1, b: 2}}\n", f"x: {deep}\ny: !!str b\n"):
        with pytest.raises(FleetFileError, match="nested too deeply"):
            parse_fleet_text("format: 1\n" + text)


def test_short_stops_early_on_huge_values() -> None:
    shared: list[object] = ["a"] * 10
    for _ in range(8):
        shared = [shared] * 10  # a billion leaves, shared
    assert len(short(shared)) <= 100
    assert short(10**5000) == "<an integer of more than 4300 digits>"
