"""One identity rule: names are compared after NFKC, case-folding and trimming,
and names with invisible or non-characters, or with letters of mixed scripts,
are refused."""

from __future__ import annotations

import contextlib
import string
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleet.core.errors import InputError, InvalidIdentity
from fleet.core.identity import MAX_IDENTITY_LENGTH, check_identity, identity_key, same_person


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("carol", "Carol"),
        ("carol", "CAROL"),
        ("carol", " carol "),
        ("carol", "carol\t"),  # white space at the edges is trimmed
        ("carol", "carol\r\n"),  # a form's trailing newline
        ("carol", "ｃａｒｏｌ"),  # full-width (NFKC)
        ("Demo-Approver", "demo-approver"),
        ("straße", "STRASSE"),  # full case folding
        ("carol smith", "Carol  Smith"),  # one space between words
        ("carol smith", "carol\u00a0smith"),  # no-break space (NFKC: a space)
        ("café", "cafe\u0301"),  # composed and decomposed
        ("ﬁona", "fiona"),  # ligature (NFKC)
    ],
)
def test_one_person(a, b):
    assert same_person(a, b)
    assert identity_key(a) == identity_key(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("carol", "caro1"),
        ("carol", "carol2"),
        ("car ol", "carol"),
        ("sope", "ѕоре"),  # all Cyrillic: look-alike scripts are not folded together
    ],
)
def test_different_people(a, b):
    assert not same_person(a, b)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("\u3000", "empty"),  # ideographic space
        ("alice\u200b", "U+200B is an invisible format character"),  # zero-width space
        ("\u200balice", "U+200B"),
        ("al\u200dice", "U+200D"),  # zero-width joiner
        ("al\u200cice", "U+200C"),  # zero-width non-joiner
        ("\ufeffalice", "U+FEFF"),  # byte order mark
        ("alice\u2060", "U+2060"),  # word joiner
        ("alice\u00ad", "U+00AD"),  # soft hyphen
        ("\u202ealice", "U+202E"),  # right-to-left override
        ("alice\u200e", "U+200E"),  # left-to-right mark
        ("alice\u2066", "U+2066"),  # left-to-right isolate
        ("alice\x00", "U+0000 is a control character"),
        ("\x00alice", "U+0000"),  # NUL is not white space: not trimmed
        ("alice\nbob", "U+000A is a control character"),
        ("alice\x7f", "U+007F"),
        ("ali\x85ce", "U+0085"),  # next line (C1 control), not at an edge
        ("alice\ud800", "U+D800 is a lone surrogate"),
        ("alice\ue000", "U+E000 is a private-use character"),
        ("alice\U000f0000", "private-use"),
        ("alice\u0378", "U+0378 is an unassigned code point"),
        ("ali\u2028ce", "line separator"),
        ("ali\u2029ce", "paragraph separator"),
        ("alice\ufe0f", "U+FE0F is an invisible character"),  # variation selector 16
        ("alice\u034f", "U+034F"),  # combining grapheme joiner
        ("\u3164", "U+3164"),  # Hangul filler, looks like nothing
        ("alice\uffa0", "U+FFA0"),  # half-width Hangul filler
        ("alice\u2800", "U+2800 is an invisible character"),  # blank braille pattern
        ("\u2800alice", "U+2800"),
        ("alice\U000e0041", "U+E0041"),  # tag letter
        ("x" * (MAX_IDENTITY_LENGTH + 1), "201 characters"),
        ("x" * 10_000_000, "10000000 characters"),
        ("\u0430lice", "U+0430 CYRILLIC SMALL LETTER A is Cyrillic, mixed with Latin"),
        ("c\u0430rol", "U+0430"),  # the odd letter is named wherever it stands
        ("carol\u0441", "U+0441 CYRILLIC SMALL LETTER ES is Cyrillic"),
        ("\u0391lice", "U+0391 GREEK CAPITAL LETTER ALPHA is Greek, mixed with Latin"),
        ("b\u03bfb", "U+03BF GREEK SMALL LETTER OMICRON is Greek"),
        ("\u0418\u0432\u0430\u043dx", "U+0078 LATIN SMALL LETTER X is Latin, mixed with Cyrillic"),
        ("Дмитрий Ivanov", "is Latin, mixed with Cyrillic"),  # one name, one script
        ("Ελένη\u0430", "U+0430 CYRILLIC SMALL LETTER A is Cyrillic, mixed with Greek"),
        ("a\u00b5b", "U+00B5 MICRO SIGN is Greek"),  # NFKC makes it a Greek mu
        ("ｃａｒｏ\u0441", "U+0441"),  # full-width Latin is Latin
        ("山田 Taro", "is Han, mixed with Latin"),
        ("ひらがな김", "U+AE40 HANGUL SYLLABLE GIM is Hangul, mixed with Hiragana"),
        ("山田はなこ김", "is Hangul, mixed with Han and Hiragana"),
        ("김ㄅ", "U+3105 BOPOMOFO LETTER B is Bopomofo, mixed with Hangul"),
    ],
)
def test_names_that_cannot_be_names_are_refused(name, why):
    with pytest.raises(InvalidIdentity, match="Invalid approver") as raised:
        check_identity(name, kind="approver")
    assert why in str(raised.value)
    assert isinstance(raised.value, InputError) and isinstance(raised.value, ValueError)
    with pytest.raises(InvalidIdentity):
        identity_key(name)
    with pytest.raises(InvalidIdentity):
        same_person(name, "alice")  # never "not the same person"


@pytest.mark.parametrize(
    "name",
    [
        "alice",
        "O'Brien-Smith 2nd",
        "José",
        "Ångström",
        "Þórunn",
        "Дмитрий",
        "Дмитрий Иванов",
        "Ελένη",
        "山田太郎",
        "山田はなこ",  # Han with Hiragana
        "ヤマダ 太郎",  # Katakana with Han
        "らーめん",  # the prolonged sound mark goes with Hiragana and Katakana
        "김민준",
        "金민준",  # Han with Hangul
        "ㄅㄆ中",  # Bopomofo with Han
        "محمد",
        "דוד",
        "देवनागरी",
        "Hawaiʻi",  # a modifier letter is of no script
        "ｃａｒｏｌ",
        "cafe\u0301",  # combining marks are of every script
        "ops@vendor.example",
        "ci-pipeline-7",
        "ⅰⅱ",  # small roman numerals: NFKC makes them Latin letters
    ],
)
def test_names_in_one_script_are_names(name):
    assert check_identity(f" {name} ") == name
    identity_key(name)


@pytest.mark.parametrize("value", [None, 3, b"alice", ["alice"]])
def test_only_text_is_a_name(value):
    with pytest.raises(InvalidIdentity, match="not text"):
        check_identity(value)


def test_the_longest_name_is_accepted_and_kept_as_given():
    name = "Ä" * MAX_IDENTITY_LENGTH
    assert check_identity(f"  {name}\t") == name
    assert identity_key(name) == "ä" * MAX_IDENTITY_LENGTH


def test_the_bad_value_is_quoted_even_when_shortened():
    with pytest.raises(InvalidIdentity) as raised:
        check_identity("y" * 5000, kind="requester")
    assert str(raised.value).startswith("Invalid requester: 'yyyy")


_refused = st.characters(categories=["Cc", "Cf", "Cs", "Co", "Zl", "Zp"])
_names = st.text(
    st.characters(categories=["L", "M", "N", "P", "S", "Zs"]), min_size=1, max_size=30
).filter(lambda s: s.strip() and all(unicodedata.category(c) != "Cn" for c in s))


@given(_names)
def test_the_key_is_stable_and_ignores_case_width_and_edges(name):
    try:
        key = identity_key(name)
    except InvalidIdentity:  # a default-ignorable letter such as U+3164, or empty once folded
        return
    assert identity_key(key) == key  # normalising twice changes nothing
    assert identity_key(f" {name.upper()} ") == identity_key(name.upper())
    assert same_person(unicodedata.normalize("NFKC", name), name)
    assert same_person(unicodedata.normalize("NFD", name), name)


@given(_names, _refused, st.integers(min_value=0, max_value=30))
def test_a_refused_character_anywhere_makes_it_no_name(name, bad, at):
    at = min(at, len(name))
    with pytest.raises(InvalidIdentity):  # inside the name: white space at an edge is trimmed
        check_identity("a" + name[:at] + bad + name[at:] + "z")


def _letters_by_script(words):
    """The BMP's letters whose Unicode name starts with one of `words` (`CYRILLIC`),
    by that word, but the ones that render as nothing (Hangul fillers)."""
    found = {word: [] for word in words}
    for point in range(0x10000):
        char = chr(point)
        if unicodedata.category(char).startswith("L"):
            name = unicodedata.name(char, "")
            word = name.partition(" ")[0]
            if word in found and "FILLER" not in name:
                found[word].append(char)
    return found


_SCRIPTS = _letters_by_script(
    (
        "LATIN",
        "CYRILLIC",
        "GREEK",
        "ARMENIAN",
        "HEBREW",
        "ARABIC",
        "DEVANAGARI",
        "THAI",
        "GEORGIAN",
        "ETHIOPIC",
        "CHEROKEE",
        "HANGUL",
        "HIRAGANA",
        "KATAKANA",
        "CJK",
        "BOPOMOFO",
    )
)
_in_one_script = st.sampled_from(sorted(_SCRIPTS)).flatmap(
    lambda word: st.text(st.sampled_from(_SCRIPTS[word]), min_size=1, max_size=40)
)
_neutral = st.text(st.sampled_from("0123456789 .-_'@"), max_size=5)


@given(_in_one_script, _neutral, st.integers(min_value=0, max_value=40))
def test_a_name_in_one_script_is_accepted(name, extra, at):
    """Any letters of one script, with digits, spaces and punctuation anywhere inside."""
    given = name[:at] + extra + name[at:]
    assert check_identity(given) == given.strip()


_cjk = st.sampled_from(
    [("CJK", "HIRAGANA", "KATAKANA"), ("CJK", "HANGUL"), ("CJK", "BOPOMOFO")]
).flatmap(
    lambda words: st.text(
        st.sampled_from([c for word in words for c in _SCRIPTS[word]]), min_size=1, max_size=40
    )
)


@given(_cjk)
def test_the_cjk_mixes_are_names(name):
    assert check_identity(name) == name


# Letters that look like Latin ones, in the scripts that have most of them.
_LOOK_ALIKES = "аеорсухіјѕԁԛԝһӏАВЕЅІЈКМНОРСТХΑΒΕΖΗΙΚΜΝΟΡΤΥΧοανιρ"


@given(
    st.text(st.sampled_from(string.ascii_letters), min_size=2, max_size=30),
    st.sampled_from(_LOOK_ALIKES),
    st.integers(min_value=0, max_value=30),
)
def test_one_look_alike_in_a_latin_name_is_refused_and_named(name, odd, at):
    with pytest.raises(InvalidIdentity) as raised:
        check_identity(name[:at] + odd + name[at:], kind="actor")
    script = unicodedata.name(odd).split()[0].title()
    assert f"U+{ord(odd):04X} {unicodedata.name(odd)} is {script}, mixed with Latin" in str(
        raised.value
    )
    with pytest.raises(InvalidIdentity):
        same_person(name[:at] + odd + name[at:], name)  # never "someone else"


@given(
    st.one_of(
        st.text(st.characters(exclude_categories=())),  # lone surrogates too
        st.text(st.sampled_from([c for letters in _SCRIPTS.values() for c in letters[:50]])),
        st.binary().map(lambda raw: raw.decode("utf-8", "surrogateescape")),
    )
)
def test_only_invalid_identity_is_raised_for_any_text(text):
    with contextlib.suppress(InvalidIdentity):
        assert check_identity(text) == text.strip()
    with contextlib.suppress(InvalidIdentity):
        identity_key(text)
    with contextlib.suppress(InvalidIdentity):
        same_person(text, "alice")


@pytest.mark.parametrize(
    "name",
    [
        "ß" * MAX_IDENTITY_LENGTH,  # case folding makes it 400 characters
        "Straße " * (MAX_IDENTITY_LENGTH // 7),
        "\ufdfa" * 12,  # NFKC makes each of them 18 characters
        "ﬃ" * MAX_IDENTITY_LENGTH,
    ],
)
def test_a_name_that_folds_longer_than_the_limit_has_a_key(name):
    """The limit is on what is stored, the name as given; its key is never stored."""
    assert check_identity(name) == name.strip()
    assert identity_key(name) == " ".join(unicodedata.normalize("NFKC", name).casefold().split())
    assert same_person(name, f" {name}\t")


@pytest.mark.parametrize(
    "name",
    [
        "alice\u0345",  # COMBINING GREEK YPOGEGRAMMENI: a Greek iota once case-folded
        "alice \u037a",  # GREEK YPOGEGRAMMENI: NFKC makes it U+0345
        "\u0345bob",
    ],
)
def test_a_name_that_mixes_scripts_once_folded_is_refused(name):
    with pytest.raises(InvalidIdentity, match=r"GREEK SMALL LETTER IOTA is Greek.*case-folded"):
        check_identity(name, kind="approver")
    with pytest.raises(InvalidIdentity):
        identity_key(name)


@given(
    st.one_of(
        _names,
        st.text(st.characters(categories=["L", "M", "N", "Zs"]), min_size=1, max_size=200),
        st.text(st.sampled_from("ßﬃ\ufdfaİͅͺ"), min_size=1, max_size=MAX_IDENTITY_LENGTH),
    )
)
def test_a_name_check_identity_accepts_has_a_key(name):
    try:
        given = check_identity(name)
    except InvalidIdentity:
        return
    key = identity_key(name)  # never refused
    assert key
    assert same_person(given, key)
