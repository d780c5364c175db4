"""People's names: one normalisation, one comparison.

A person's name (an approver, the requester of a run, an API token's
principal, who accepted a risk) is data from outside. Where it enters,
`check_identity` refuses what cannot be a name; wherever two names are
compared, `same_person` compares their `identity_key`: Unicode NFKC,
case-folded, trimmed, inner runs of white space made one space. `Carol`,
`carol ` and the full-width `ｃａｒｏｌ` are one person.

Refused: an empty name, one longer than `MAX_IDENTITY_LENGTH`, and one with
a character that is invisible or not a character at all: control
characters (Cc), format characters (Cf: zero-width space and joiners, bidi
marks, the byte order mark), surrogates (Cs), private-use (Co) and
unassigned (Cn) code points, line and paragraph separators, and the other
default-ignorable code points (variation selectors, Hangul fillers, the
combining grapheme joiner, ...) and the blank braille pattern, which render as
nothing. `alice` followed by a zero-width space is not a new person: it is
refused.

Also refused: a name whose letters mix scripts, such as `аlice` with a
Cyrillic `а`, which looks like `alice` and is someone else to every
comparison. A name is written in one script; the only mixes allowed are those
of CJK names: Han with Hiragana and Katakana, Han with Hangul, Han with
Bopomofo (UTS #39's "highly restrictive" level, without Latin). Only letters
count: digits, punctuation, symbols, spaces and combining marks belong to
every script. A letter's script is the first word of its Unicode name after
NFKC (`CYRILLIC SMALL LETTER A`), which the standard library knows; `ｃａｒｏｌ`
is Latin. A name wholly in one script is valid (`Дмитрий`, `José`, `Ελένη`,
`山田太郎`); one written in two is not, even when both halves are real
(`Дмитрий Ivanov`). Names that are wholly look-alikes of another script
(`Ѕоре`, all Cyrillic, beside `Sope`) are not told apart.

The form names are compared in is held to the same rule: a name whose
NFKC, case-folded form has a refused character or mixes scripts is refused
(`alice` with U+0345 COMBINING GREEK YPOGEGRAMMENI folds to `aliceι`), so a
name `check_identity` accepts always has a key. That form's length is not
limited: it is never stored, and folding lengthens (`ß` becomes `ss`).

Names are stored as given (trimmed): the audit chain shows what was typed or
which token acted, and the key is recomputed wherever names are compared.
"""

from __future__ import annotations

import unicodedata
from collections import Counter

from fleet.core.errors import InvalidIdentity

__all__ = ["MAX_IDENTITY_LENGTH", "check_identity", "identity_key", "same_person"]

# The longest name Fleet stores (the database columns of approvers, actors and
# requesters hold 200 characters).
MAX_IDENTITY_LENGTH = 200

# What is looked at before trimming: generous padding, not megabytes.
_MAX_GIVEN = 4 * MAX_IDENTITY_LENGTH

_REFUSED_CATEGORIES = {
    "Cc": "a control character",
    "Cf": "an invisible format character",
    "Cs": "a lone surrogate",
    "Co": "a private-use character",
    "Cn": "an unassigned code point",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}

# Unicode's Default_Ignorable_Code_Point ranges (DerivedCoreProperties.txt)
# that are not already format characters, and one blank: they render as nothing.
_IGNORABLE = (
    (0x034F, 0x034F),  # combining grapheme joiner
    (0x115F, 0x1160),  # Hangul choseong and jungseong fillers
    (0x17B4, 0x17B5),  # Khmer inherent vowels
    (0x180B, 0x180F),  # Mongolian free variation selectors
    (0x3164, 0x3164),  # Hangul filler
    (0xFE00, 0xFE0F),  # variation selectors
    (0xFFA0, 0xFFA0),  # half-width Hangul filler
    (0xFFF0, 0xFFF8),
    (0x1D173, 0x1D17A),  # musical symbol format controls
    (0xE0000, 0xE0FFF),  # tags and variation selectors supplement
    # Not default-ignorable, but drawn as nothing all the same: the blank braille
    # pattern (`alice` followed by it looks like `alice `, yet is not trimmed).
    (0x2800, 0x2800),
)


def _why_refused(char: str) -> str | None:
    category = unicodedata.category(char)
    if category in _REFUSED_CATEGORIES:
        return _REFUSED_CATEGORIES[category]
    point = ord(char)
    if any(low <= point <= high for low, high in _IGNORABLE):
        return "an invisible character"
    return None


# The first words of Unicode names that are no script's name, or another name
# of one (CJK ideographs and iteration marks are Han; the prolonged sound mark
# is written with Hiragana and Katakana alike).
_SCRIPT_OF_WORD = {
    "CJK": "Han",
    "IDEOGRAPHIC": "Han",
    "MASU": "Han",
    "HENTAIGANA": "Hiragana",
    "KATAKANA-HIRAGANA": "Katakana",
    "TURNED": "Latin",
    "ROMAN": "Latin",
}
# Letters of no script of their own: modifier letters (the apostrophe of
# `Hawaiʻi`), Vedic signs, vertical iteration marks.
_NO_SCRIPT = frozenset({"MODIFIER", "CARON", "VERTICAL", "VEDIC"})
_MIXES = (
    frozenset({"Han", "Hiragana", "Katakana"}),
    frozenset({"Han", "Hangul"}),
    frozenset({"Han", "Bopomofo"}),
)


def _scripts_of(char: str) -> list[str]:
    """The scripts of the letters `char` stands for after NFKC (none for a digit,
    a mark, a space, ...)."""
    scripts = []
    for part in unicodedata.normalize("NFKC", char):
        if not unicodedata.category(part).startswith("L"):
            continue
        # Unnamed letters (Tangut ideographs in some Python versions) share one script.
        word = unicodedata.name(part, "UNNAMED").partition(" ")[0]
        if word not in _NO_SCRIPT:
            scripts.append(_SCRIPT_OF_WORD.get(word, word.title()))
    return scripts


def _may_mix(scripts: frozenset[str]) -> bool:
    return len(scripts) < 2 or any(scripts <= mix for mix in _MIXES)


def _mixed_scripts(name: str) -> str | None:
    """Why `name`'s letters are of scripts that are not written together, or None.

    The letter named is the first that does not go with the script most letters
    are in (the first script seen, at a tie).
    """
    if name.isascii():  # Latin letters only: the common case, decided at once
        return None
    letters = [(char, script) for char in name for script in _scripts_of(char)]
    counts = Counter(script for _, script in letters)
    if _may_mix(frozenset(counts)):
        return None
    main = max(counts, key=counts.__getitem__)
    seen = {main}
    for char, script in letters:
        if not _may_mix(frozenset(seen | {script})):
            label = " ".join((f"U+{ord(char):04X}", unicodedata.name(char, ""))).rstrip()
            return f"{label} is {script}, mixed with {' and '.join(sorted(seen))}"
        seen.add(script)
    raise AssertionError(f"no letter of {name!r} mixes scripts")  # pragma: no cover


def _refuse(name: object, kind: str, why: str) -> InvalidIdentity:
    return InvalidIdentity(f"Invalid {kind}: {name!r} ({why})")


def check_identity(name: object, *, kind: str = "name") -> str:
    """`name` trimmed, when it can be a person's name; else `InvalidIdentity`.

    White space at either end (a newline a form added) is trimmed first;
    what is left must hold no refused character, and its letters must not mix
    scripts, before and after NFKC and case folding (the form `identity_key`
    compares).

    `kind` names the field in the message (`approver`, `requester`, ...).

    >>> check_identity("  Carol ")
    'Carol'
    >>> try:
    ...     check_identity("alice\\u200b", kind="approver")
    ... except InvalidIdentity as exc:
    ...     print(exc)
    Invalid approver: 'alice\\u200b' (U+200B is an invisible format character)
    >>> try:
    ...     check_identity("\\u0430lice", kind="actor")
    ... except InvalidIdentity as exc:
    ...     print(exc)
    Invalid actor: 'аlice' (U+0430 CYRILLIC SMALL LETTER A is Cyrillic, mixed with Latin)
    """
    return _checked(name, kind)[0]


def _checked(name: object, kind: str) -> tuple[str, str]:
    """`name` trimmed and the form it is compared in, when both can be a name."""
    if not isinstance(name, str):
        raise _refuse(name, kind, "not text")
    if len(name) > _MAX_GIVEN:  # before looking at each character of a huge value
        raise _refuse(name[:40] + "...", kind, f"{len(name)} characters")
    trimmed = name.strip()
    why = _refused_character(trimmed)
    if why is not None:
        raise _refuse(name, kind, why)
    if not trimmed:
        raise _refuse(name, kind, "empty")
    if len(trimmed) > MAX_IDENTITY_LENGTH:
        raise _refuse(
            name[:40] + "...", kind, f"{len(trimmed)} characters, at most {MAX_IDENTITY_LENGTH}"
        )
    why = _mixed_scripts(trimmed)
    if why is not None:
        raise _refuse(name, kind, why)
    # The form names are compared in is held to the same rule: NFKC can turn a
    # visible character into one refused above (the half-width Hangul filler into
    # the Hangul jungseong filler), and case folding a combining mark into a letter
    # (U+0345 COMBINING GREEK YPOGEGRAMMENI into a Greek iota). Its length is not
    # limited: it is never stored, and folding lengthens (`ß` is `ss`, U+FDFA is 18
    # characters).
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", trimmed).casefold())
    if not folded.strip():
        raise _refuse(name, kind, "empty, once case-folded")
    why = _refused_character(folded) or _mixed_scripts(folded)
    if why is not None:
        raise _refuse(name, kind, f"{why}, once case-folded")
    return trimmed, folded


def _refused_character(text: str) -> str | None:
    for char in text:
        why = _why_refused(char)
        if why is not None:
            return f"U+{ord(char):04X} is {why}"
    return None


def identity_key(name: str, *, kind: str = "name") -> str:
    """The form in which names are compared (NFKC, case-folded, trimmed, one space
    between words); refuses what `check_identity` refuses.

    >>> identity_key(" Carol  Smith ")
    'carol smith'
    >>> identity_key("ＣＡＲＯＬ") == identity_key("carol")
    True
    """
    # The folded form is checked with the name: a name check_identity accepts has a key.
    return " ".join(_checked(name, kind)[1].split())


def same_person(a: str, b: str) -> bool:
    """Whether two names name one person (their `identity_key`s are equal).

    Raises `InvalidIdentity` for a name that cannot be one: a check that
    cannot tell must never answer "not the same person".

    >>> same_person("Carol", "carol ")
    True
    >>> same_person("carol", "caro1")
    False
    """
    return identity_key(a) == identity_key(b)
