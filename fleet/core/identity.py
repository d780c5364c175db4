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
combining grapheme joiner, ...), which render as nothing. `alice` followed
by a zero-width space is not a new person: it is refused.

Names are stored as given (trimmed): the audit chain shows what was typed or
which token acted, and the key is recomputed wherever names are compared.
"""

from __future__ import annotations

import unicodedata

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
# that are not already format characters: they render as nothing.
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
)


def _why_refused(char: str) -> str | None:
    category = unicodedata.category(char)
    if category in _REFUSED_CATEGORIES:
        return _REFUSED_CATEGORIES[category]
    point = ord(char)
    if any(low <= point <= high for low, high in _IGNORABLE):
        return "an invisible character"
    return None


def _refuse(name: object, kind: str, why: str) -> InvalidIdentity:
    return InvalidIdentity(f"Invalid {kind}: {name!r} ({why})")


def check_identity(name: object, *, kind: str = "name") -> str:
    """`name` trimmed, when it can be a person's name; else `InvalidIdentity`.

    White space at either end (a newline a form added) is trimmed first;
    what is left must hold no refused character.

    `kind` names the field in the message (`approver`, `requester`, ...).

    >>> check_identity("  Carol ")
    'Carol'
    >>> try:
    ...     check_identity("alice\\u200b", kind="approver")
    ... except InvalidIdentity as exc:
    ...     print(exc)
    Invalid approver: 'alice\\u200b' (U+200B is an invisible format character)
    """
    if not isinstance(name, str):
        raise _refuse(name, kind, "not text")
    if len(name) > _MAX_GIVEN:  # before looking at each character of a huge value
        raise _refuse(name[:40] + "...", kind, f"{len(name)} characters")
    trimmed = name.strip()
    for char in trimmed:
        why = _why_refused(char)
        if why is not None:
            raise _refuse(name, kind, f"U+{ord(char):04X} is {why}")
    if not trimmed:
        raise _refuse(name, kind, "empty")
    if len(trimmed) > MAX_IDENTITY_LENGTH:
        raise _refuse(
            name[:40] + "...", kind, f"{len(trimmed)} characters, at most {MAX_IDENTITY_LENGTH}"
        )
    return trimmed


def identity_key(name: str, *, kind: str = "name") -> str:
    """The form in which names are compared (NFKC, case-folded, trimmed, one space
    between words); refuses what `check_identity` refuses.

    >>> identity_key(" Carol  Smith ")
    'carol smith'
    >>> identity_key("ＣＡＲＯＬ") == identity_key("carol")
    True
    """
    given = check_identity(name, kind=kind)
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", given).casefold())
    # NFKC can turn a visible character into one refused above (e.g. the
    # half-width Hangul filler into the Hangul jungseong filler): check again.
    check_identity(folded, kind=kind)
    return " ".join(folded.split())


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
