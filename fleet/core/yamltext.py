"""Reading a fleet file's YAML: YAML 1.2 scalars, duplicate keys refused, fast.

`load_yaml` is the one entry point. Its meaning is `load_reference`: PyYAML's
safe loader with three changes. Floats and timestamps stay text (`2.10` is the
version "2.10", not 2.1), only `true`/`false` are booleans (`no` is Norway),
and a key given twice in one mapping is an error naming its line.

The reference spends most of its time outside the C parser: it builds a node
per value and runs Python regular expressions over every plain scalar. A
10,000-instance fleet file has about 200,000 scalars but a few thousand
distinct ones. So `load_yaml` first builds the data straight from libyaml's
events, resolving each distinct plain scalar once with the reference's own
resolver and constructor. It does so only on the plain path: a tag, an
alias of a collection inside itself, a key that is not a scalar, a merge key, a second document
or any error, and it hands the whole text to the reference instead. Errors and
rare forms therefore read exactly as the reference reports them, and the
tests compare the two on generated documents.
"""

from __future__ import annotations

import re
import reprlib
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import MappingNode, ScalarNode

from fleet.core.errors import FleetFileError

__all__ = ["load_reference", "load_yaml", "short"]

# Python refuses to turn longer digit strings into an int (a guard against
# quadratic conversion); a fleet file never needs one.
MAX_INT_DIGITS = 4300
_INT_BOUND = 10**MAX_INT_DIGITS

# Aliases let a small text stand for a huge value (`[*a, *a, ...]` nested):
# past this many values, expanded, the document is refused before anything
# walks it. A 10,000-instance fleet file holds about 200,000.
MAX_VALUES = 5_000_000

# Deeper than this, the fast path hands the text to the reference, whose
# recursion decides (a fleet file is a few levels deep).
_FAST_DEPTH = 64

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"


class _Short(reprlib.Repr):
    """`repr` that stops early: a value built through aliases may be huge."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxlist = self.maxtuple = self.maxdict = self.maxset = self.maxfrozenset = 12
        self.maxstring = self.maxother = 200

    def repr_str(self, x: str, level: int) -> str:
        return repr(x[:200])

    def repr_int(self, x: int, level: int) -> str:
        try:
            return repr(x)
        except ValueError:  # past the digits Python turns into text
            return f"<an integer of more than {MAX_INT_DIGITS} digits>"


_SHORT = _Short()


def short(value: Any) -> str:
    """The value quoted, cut when long.

    >>> short("x" * 200)[-6:], short(10 ** 5000)
    ('xxx...', '<an integer of more than 4300 digits>')
    """
    text = repr(value) if isinstance(value, str) else _SHORT.repr(value)
    return text if len(text) <= 100 else text[:97] + "..."


# libyaml's parser where PyYAML has it (pure Python is several times slower on a
# fleet of thousands of instances); the constructors and resolvers are the same.
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _where(node: yaml.Node) -> str:
    mark = node.start_mark
    return f"line {mark.line + 1}, column {mark.column + 1}"


class _Loader(_SafeLoader):  # type: ignore[valid-type,misc]
    """SafeLoader with YAML 1.2 scalars and duplicate keys refused."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # PyYAML's constructors raise plain Python errors on values that match
        # a tag's pattern but not its parser (`!!int ""`, `!!timestamp x`,
        # `!!bool x`).
        try:
            return super().construct_object(node, deep=deep)
        except (FleetFileError, yaml.YAMLError):
            raise
        except (ValueError, TypeError, IndexError, OverflowError, KeyError, AttributeError) as exc:
            tag = node.tag.rsplit(":", 1)[-1]
            value = f" {short(node.value)}" if isinstance(node, ScalarNode) else ""
            raise FleetFileError([f"{_where(node)}: invalid {tag}{value}"]) from exc


_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag
        not in ("tag:yaml.org,2002:float", "tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:bool")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL,
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def _construct_mapping(loader: _Loader, node: MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, str | int | bool) and key in seen:
            raise FleetFileError([f"{_where(key_node)}: duplicate key {short(key)}"])
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


def _construct_int(loader: _Loader, node: ScalarNode) -> int:
    # Hexadecimal and base-60 forms hold more value per character than
    # decimal: the text and the number are both bounded.
    written = len(node.value) if isinstance(node, ScalarNode) else 0
    value = 0 if written > MAX_INT_DIGITS else int(yaml.SafeLoader.construct_yaml_int(loader, node))
    if written > MAX_INT_DIGITS or abs(value) >= _INT_BOUND:
        raise FleetFileError(
            [f"{_where(node)}: integer of more than {MAX_INT_DIGITS} digits ({short(node.value)})"]
        )
    return value


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(_INT, _construct_int)


def load_reference(text: str) -> Any:
    """The fleet file's YAML read node by node: what `load_yaml` means."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        raise FleetFileError([f"{where}: invalid YAML ({exc.problem})"]) from exc
    except yaml.YAMLError as exc:
        raise FleetFileError([f"YAML: invalid YAML ({exc})"]) from exc


def load_yaml(text: str) -> Any:
    """The data of one YAML document, as `load_reference` reads it, in a fraction of its time.

    >>> load_yaml("version: 2.10\\nports: [80, 0x1bb]\\nlegacy: no\\n")
    {'version': '2.10', 'ports': [80, 443], 'legacy': 'no'}
    """
    try:
        try:
            data, aliased = _plain(text)
        except _NotPlain:
            data, aliased = load_reference(text), True
    except UnicodeEncodeError as exc:  # a lone surrogate: libyaml reads UTF-8 only
        line = text.count("\n", 0, exc.start) + 1
        column = exc.start - (text.rfind("\n", 0, exc.start) + 1) + 1
        char = text[exc.start]
        raise FleetFileError(
            [f"line {line}, column {column}: lone surrogate {char!r} (not Unicode text)"]
        ) from None
    if aliased:
        _check_expansion(data)
    return data


def _check_expansion(data: Any) -> None:
    """Refuse data that contains itself, or more than `MAX_VALUES` values once
    every shared part is counted each time it appears."""
    if not isinstance(data, dict | list):
        return
    sizes: dict[int, int] = {}
    open_ids: set[int] = set()  # the ancestors of what is being counted
    stack: list[tuple[Any, bool]] = [(data, False)]
    while stack:
        value, counted = stack.pop()
        children = value.values() if isinstance(value, dict) else value
        if counted:
            open_ids.discard(id(value))
            size = 1 + len(value) + sum(sizes.get(id(c), 0) for c in children)
            if size > MAX_VALUES:
                raise FleetFileError(
                    [f"YAML: aliases expand the document past {MAX_VALUES:,} values"]
                )
            sizes[id(value)] = size
            continue
        if id(value) in sizes:
            continue
        if id(value) in open_ids:
            raise FleetFileError(["YAML: a value contains itself through an alias"])
        open_ids.add(id(value))
        stack.append((value, True))
        stack.extend((c, False) for c in children if isinstance(c, dict | list))


class _NotPlain(Exception):
    """The text leaves the plain path; the reference reads it."""


# Tags a plain scalar may resolve to on the plain path; the others (merge keys,
# `=`) have meanings only the reference gives.
_PLAIN_TAGS = frozenset({_STR, _INT, _NULL, _BOOL})


def _plain_scalar(loader: _Loader, event: ScalarEvent) -> Any:
    value = event.value
    tag = loader.resolve(ScalarNode, value, (True, False))
    if tag not in _PLAIN_TAGS:
        raise _NotPlain
    if tag == _INT and len(value) > MAX_INT_DIGITS:
        raise _NotPlain
    return loader.yaml_constructors[tag](
        loader,
        ScalarNode(tag, value, event.start_mark, event.end_mark),  # type: ignore[arg-type]
    )


def load_plain(text: str) -> Any:
    """`text`'s data built from the parser's events; `_NotPlain` where that path ends.

    Anchors and aliases share one value, as the reference shares them. A value
    is attached to its parent as soon as it starts, so one loop with
    a stack of open collections reads any depth without recursion.
    """
    return _plain(text)[0]


def _plain(text: str) -> tuple[Any, bool]:
    """`load_plain`'s data, and whether it met an alias."""
    loader = _Loader(text)
    try:
        return _build(loader)
    except (yaml.YAMLError, ValueError, FleetFileError):
        raise _NotPlain from None
    finally:
        loader.dispose()


def _build(loader: _Loader) -> tuple[Any, bool]:
    get_event = loader.get_event
    get_event()  # stream start
    event = get_event()
    if isinstance(event, StreamEndEvent):
        return None, False
    # Document start. Its directives name tag handles, which only tags use.
    scalars: dict[str, Any] = {}
    anchors: dict[str, Any] = {}
    aliased = False
    open_anchored: set[int] = set()  # collections with an anchor, not yet ended
    no_key = _NotPlain  # a sentinel no document can produce
    root: list[Any] = []
    containers: list[Any] = [root]  # the open collections, innermost last
    keys: list[Any] = [None]  # per open mapping, the key waiting for its value
    is_map = [False]
    while True:
        event = get_event()
        kind = event.__class__
        opens = False
        if kind is ScalarEvent:
            if event.tag is not None:
                raise _NotPlain
            text = event.value
            if event.implicit[0]:
                try:
                    value = scalars[text]
                except KeyError:
                    value = scalars[text] = _plain_scalar(loader, event)
            else:
                value = text
        elif kind is MappingStartEvent or kind is SequenceStartEvent:
            if event.tag is not None:
                raise _NotPlain
            value = {} if kind is MappingStartEvent else []
            opens = True
        elif kind is MappingEndEvent or kind is SequenceEndEvent:
            open_anchored.discard(id(containers.pop()))
            keys.pop()
            is_map.pop()
            continue
        elif kind is AliasEvent:
            aliased = True
            # The anchored value itself, shared, as the reference shares it.
            if event.anchor not in anchors:
                raise _NotPlain  # undefined: the reference names it
            value = anchors[event.anchor]
            if id(value) in open_anchored:
                raise _NotPlain  # a collection inside itself
        elif kind is DocumentEndEvent and len(containers) == 1:
            if not isinstance(get_event(), StreamEndEvent):
                raise _NotPlain  # a second document: the reference refuses it
            return root[0], aliased
        else:
            raise _NotPlain
        if event.anchor is not None and kind is not AliasEvent:
            if event.anchor in anchors:
                raise _NotPlain  # anchored twice: the reference refuses it
            anchors[event.anchor] = value
            if opens:
                open_anchored.add(id(value))
        if not is_map[-1]:
            containers[-1].append(value)
        elif keys[-1] is no_key:
            if isinstance(value, dict | list):
                raise _NotPlain  # a collection as a key
            if isinstance(value, str | int) and value in containers[-1]:
                raise _NotPlain  # a duplicate key: the reference names its line
            keys[-1] = value
        else:
            containers[-1][keys[-1]] = value
            keys[-1] = no_key
        if opens:
            if len(containers) > _FAST_DEPTH:
                raise _NotPlain
            containers.append(value)
            keys.append(no_key)
            is_map.append(kind is MappingStartEvent)
